#!/usr/bin/env bash
# Install Debian's chromium for the browser tests of `theoryx ui` (tests/ui). Idempotent: with a
# working `chromium` on PATH this is a fast no-op. Playwright (a test extra in pyproject.toml)
# drives this browser through `executable_path`; its own browser download is never used.
#
# Environment:
#   THEORYX_CHROMIUM_NO_INSTALL=1  never apt-get install, just report and fail
set -u -o pipefail

if command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1; then
  exit 0
fi
if [ "${THEORYX_CHROMIUM_NO_INSTALL:-0}" = "1" ]; then
  echo "chromium-up: chromium is not installed (THEORYX_CHROMIUM_NO_INSTALL=1)" >&2
  exit 1
fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium-up: chromium is missing and installing it needs root: apt-get install chromium" >&2
  exit 1
fi
echo "chromium-up: installing Debian's chromium (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "chromium-up: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq chromium >/dev/null \
  || { echo "chromium-up: apt-get install chromium failed" >&2; exit 1; }
chromium --version >/dev/null 2>&1 || { echo "chromium-up: chromium does not start" >&2; exit 1; }
echo "chromium-up: $(chromium --version 2>/dev/null)" >&2
