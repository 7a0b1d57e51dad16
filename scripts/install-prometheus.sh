#!/usr/bin/env bash
# Unpack Debian's prometheus (promtool + the server) and prometheus-alertmanager packages into
# .tools/prometheus without installing them: `apt-get install` would start system services
# (and fails where there is no init). `apt-get download` needs no root; `dpkg -x` only
# extracts the files. The binaries are static Go programs: no dependency needs installing.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/prometheus
bins="$dest/usr/bin"
if [ -x "$bins/promtool" ] && [ -x "$bins/prometheus" ] && [ -x "$bins/alertmanager-local" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packages="prometheus prometheus-alertmanager"
# A stale or missing package list makes `apt-get download` fail; refresh it when allowed.
if ! (cd "$work" && apt-get download $packages >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo -n apt-get update -qq || true; fi
    (cd "$work" && apt-get download $packages)
fi
mkdir -p "$dest"
for deb in "$work"/*.deb; do
    dpkg -x "$deb" "$dest"
done
# Debian's Alertmanager reads its default notification template from the absolute path
# /usr/share/prometheus/alertmanager (its upstream embeds it), which exists only when the
# package is installed. alertmanager-local is a copy with that path made relative, of the same
# length ("./" plus slashes: the same directory once normalised), and it is run from
# .tools/prometheus/usr/share/prometheus, where dpkg -x put the templates.
python3 - "$bins/prometheus-alertmanager" "$bins/alertmanager-local" <<'PY'
import os, sys
old = b"/usr/share/prometheus/alertmanager"
new = b"." + b"/" * (len(old) - len(b".alertmanager")) + b"alertmanager"
data = open(sys.argv[1], "rb").read()
if data.count(old) == 0:
    sys.exit(f"{sys.argv[1]}: {old!r} not found: a different Debian build?")
open(sys.argv[2], "wb").write(data.replace(old, new))
os.chmod(sys.argv[2], 0o755)
PY
"$bins/promtool" --version | head -1
"$bins/alertmanager-local" --version 2>&1 | head -1
