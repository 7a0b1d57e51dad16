#!/usr/bin/env bash
# Unpack Debian's prometheus package (promtool + the server) into .tools/prometheus without
# installing it: `apt-get install prometheus` would start a system service (and fails where
# there is no init). `apt-get download` needs no root; `dpkg -x` only extracts the files.
# The binaries are static Go programs, so no dependency needs installing.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/prometheus
if [ -x "$dest/usr/bin/promtool" ] && [ -x "$dest/usr/bin/prometheus" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A stale or missing package list makes `apt-get download` fail; refresh it when allowed.
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo -n apt-get update -qq || true; fi
    (cd "$work" && apt-get download prometheus)
fi
mkdir -p "$dest"
dpkg -x "$work"/prometheus_*.deb "$dest"
"$dest/usr/bin/promtool" --version | head -1
