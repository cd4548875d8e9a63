#!/usr/bin/env bash
# Install the command-line references the tests and benchmarks compare against (b3sum, from
# Debian's packages). Idempotent: a fast no-op when present.
#
# Environment:
#   THEORYX_TOOLS_NO_INSTALL=1  never apt-get install, just report and fail
set -u -o pipefail

missing=()
command -v b3sum >/dev/null 2>&1 || missing+=(b3sum)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${THEORYX_TOOLS_NO_INSTALL:-0}" = "1" ] || [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tools-up: missing ${missing[*]} (install with: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "tools-up: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
  || { echo "tools-up: apt-get install ${missing[*]} failed" >&2; exit 1; }
