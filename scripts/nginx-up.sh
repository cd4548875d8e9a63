#!/usr/bin/env bash
# Install what the team cache's tests need to run a real WebDAV server: Debian's nginx, its
# WebDAV extension module and htpasswd (apache2-utils). Idempotent: a second call with
# everything present is a fast no-op. Starts nothing: each test starts its own nginx on a free
# 127.0.0.1 port (tests/remote/nginx_server.py).
#
# Environment:
#   THEORYX_NGINX_NO_INSTALL=1   never apt-get install, just report what is missing (exit 1)
set -u -o pipefail

say() { echo "nginx-up: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
MODULE=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so

have_all() { command -v nginx >/dev/null 2>&1 && [ -e "$MODULE" ] && command -v htpasswd >/dev/null 2>&1; }

if have_all; then
    say "nginx $(nginx -v 2>&1 | sed 's/.*\///'), WebDAV extension and htpasswd present"
    exit 0
fi
[ "${THEORYX_NGINX_NO_INSTALL:-0}" = 1 ] && die "nginx, $MODULE or htpasswd missing and THEORYX_NGINX_NO_INSTALL=1"
[ "$(id -u)" -eq 0 ] || die "must run as root to install nginx (try: sudo $0)"
command -v apt-get >/dev/null 2>&1 || die "no apt-get to install nginx libnginx-mod-http-dav-ext apache2-utils"
export DEBIAN_FRONTEND=noninteractive
# Debian's postinst would start the system nginx on port 80: the tests need none of it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod +x "$POLICY" && created_policy=1; fi
say "installing nginx libnginx-mod-http-dav-ext apache2-utils with apt-get"
apt-get update -qq >&2 || say "apt-get update failed; trying the install anyway"
apt-get install -y -qq --no-install-recommends nginx libnginx-mod-http-dav-ext apache2-utils >&2
rc=$?
[ "$created_policy" = 1 ] && rm -f "$POLICY"
[ $rc -eq 0 ] || die "apt-get install failed"
have_all || die "installed, but nginx, $MODULE or htpasswd is still missing"
say "installed"
