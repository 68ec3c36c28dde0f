#!/usr/bin/env bash
# Install what the browser tests need, once: Debian's Chromium and ChromeDriver (the
# login, consent and picker pages and the SMART client launches run in headless
# Chromium), the JavaScript SMART client (npm "fhirclient") and axe-core (the portal's
# accessibility checks, tests/portal) into .cache/js-client.
#
# Usage: scripts/setup_browser.sh        Idempotent; when it cannot install on this
# machine it prints a warning with the cause (the last lines of the installer's output,
# kept whole in .cache/setup-logs/apt.log or npm.log) and the browser tests say why they
# skip. It always exits 0: the rest of the test suite runs without a browser.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOGS="$ROOT/.cache/setup-logs"
mkdir -p "$LOGS"

# explain LOG MESSAGE: the warning, then the end of the log that holds its cause.
explain() {
    echo "warning: $2" >&2
    echo "  cause (the last lines of $1):" >&2
    tail -n 20 "$1" | sed 's/^/  | /' >&2
}

# run LOG COMMAND...: run the command with its output appended to LOG.
run() {
    local log="$1"
    shift
    echo "\$ $*" >>"$log"
    "$@" >>"$log" 2>&1
}

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=()
        if [ "$(id -u)" != 0 ]; then SUDO=(sudo -n); fi
        APT_LOG="$LOGS/apt.log"
        : >"$APT_LOG"
        echo "installing chromium and chromium-driver (apt-get; output in $APT_LOG)"
        # a failed update is not fatal by itself (the lists there are may do); its output
        # stays in the log, in front of the install's, in case the install fails too
        run "$APT_LOG" ${SUDO[@]+"${SUDO[@]}"} apt-get update -qq
        if ! run "$APT_LOG" ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq chromium chromium-driver; then
            explain "$APT_LOG" "could not install chromium (apt-get failed); browser tests will skip"
        elif ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
            echo "apt-get succeeded, but chromium or chromedriver is not on PATH ($PATH)" \
                >>"$APT_LOG"
            explain "$APT_LOG" "chromium or chromedriver is still missing; browser tests will skip"
        fi
    else
        echo "warning: no apt-get; install Chromium and ChromeDriver for the browser tests" >&2
    fi
fi

JS="$ROOT/.cache/js-client"
if [ ! -f "$JS/node_modules/fhirclient/build/fhir-client.js" ] ||
    [ ! -f "$JS/node_modules/axe-core/axe.min.js" ]; then
    if command -v npm >/dev/null 2>&1; then
        NPM_LOG="$LOGS/npm.log"
        : >"$NPM_LOG"
        mkdir -p "$JS"
        if ! (cd "$JS" && run "$NPM_LOG" npm install --no-audit --no-fund --no-progress \
            --prefix . fhirclient@2.6.3 axe-core@4.14.1); then
            explain "$NPM_LOG" "could not install the npm fhirclient and axe-core; their browser tests will skip"
        fi
    else
        echo "warning: no npm; the fhirclient browser test will skip (install Node 20)" >&2
    fi
fi
exit 0
