#!/usr/bin/env bash
# Install what the browser tests need, once: Debian's Chromium and ChromeDriver (the
# login, consent and picker pages and the SMART client launches run in headless
# Chromium), and the JavaScript SMART client (npm "fhirclient") into .cache/js-client.
#
# Usage: scripts/setup_browser.sh        Idempotent; prints a warning (and the browser
# tests say why they skip) when it cannot install on this machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
        echo "installing chromium and chromium-driver (apt-get)"
        $SUDO apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
            >/dev/null 2>&1 || echo "warning: could not install chromium; browser tests will skip"
    else
        echo "warning: no apt-get; install Chromium and ChromeDriver for the browser tests"
    fi
fi

JS="$ROOT/.cache/js-client"
if [ ! -f "$JS/node_modules/fhirclient/build/fhir-client.js" ] && command -v npm >/dev/null 2>&1; then
    mkdir -p "$JS"
    (cd "$JS" && npm install --silent --no-audit --no-fund --prefix . fhirclient@2.6.3 >/dev/null 2>&1) \
        || echo "warning: could not install the npm fhirclient; its browser test will skip"
fi
exit 0
