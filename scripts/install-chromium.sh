#!/bin/sh
# Debian's chromium for the browser test of the live page (tests/integration/test_dashboard_page.py).
# Playwright drives it through executable_path: no browser download, no `playwright install`.
set -eu
if [ -x /usr/bin/chromium ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
