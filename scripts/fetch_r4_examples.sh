#!/usr/bin/env bash
# Download the official FHIR R4 (4.0.1) examples package and unpack it.
#
# The examples are published by HL7 as the npm package hl7.fhir.r4.examples
# (https://hl7.org/fhir/R4/downloads.html, "Examples" / NPM packages). They are used by the
# tests to check that the validator accepts valid R4 resources.
#
# Usage: scripts/fetch_r4_examples.sh [DEST]     (default DEST: .cache/r4-examples)
#
# Idempotent: when DEST already holds the unpacked package, nothing is downloaded.
# Result: DEST/package/<ResourceType>-<id>.json (one file per example resource).
set -euo pipefail

PACKAGE="hl7.fhir.r4.examples@4.0.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.cache/r4-examples}"
MARKER="$DEST/package/package.json"

if [[ -f "$MARKER" ]]; then
    echo "R4 examples already present in $DEST"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is required to download $PACKAGE" >&2
    exit 2
fi

mkdir -p "$DEST"
WORK="$(mktemp -d "$DEST/.download.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
TARBALL="$(find "$WORK" -maxdepth 1 -name '*.tgz' | head -n 1)"
if [[ -z "$TARBALL" ]]; then
    echo "npm pack did not produce a tarball for $PACKAGE" >&2
    exit 1
fi

# Unpack next to the destination first, then move into place, so that an interrupted run
# never leaves a half-unpacked package that the marker check would take for complete.
mkdir -p "$WORK/unpacked"
tar -xzf "$TARBALL" -C "$WORK/unpacked"
rm -rf "$DEST/package"
mv "$WORK/unpacked/package" "$DEST/package"
echo "R4 examples unpacked into $DEST/package"
