#!/usr/bin/env bash
# Build the offline Python base image for theoryx processors, without any
# container registry: debootstrap a minimal Debian bookworm with python3 from
# the Debian mirror this host's apt already uses, add a non-root user, and
# `docker import` the rootfs. Does nothing if the image already exists.
#
#   image     : ${THEORYX_BASE_IMAGE:-theoryx/python-base:bookworm}
#   user      : theoryx, uid/gid ${THEORYX_UID:-10001} (run containers with user="10001:10001")
#   mirror    : ${THEORYX_DEBIAN_MIRROR:-<read from /etc/apt/sources.list{,.d/*}>}
#   suite     : ${THEORYX_DEBIAN_SUITE:-bookworm}
#   packages  : python3 + ${THEORYX_BASE_EXTRA_PACKAGES:-} (comma separated)
#   THEORYX_BASE_FORCE=1 rebuilds (replaces the tag) even if it exists.
#
# Requires root and a running engine (scripts/docker-up.sh).
set -euo pipefail

NAME="${THEORYX_BASE_IMAGE:-theoryx/python-base:bookworm}"
SUITE="${THEORYX_DEBIAN_SUITE:-bookworm}"
T_UID="${THEORYX_UID:-10001}"
T_USER=theoryx
EXTRA="${THEORYX_BASE_EXTRA_PACKAGES:-}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { echo "base-image: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker CLI; run scripts/docker-up.sh first"
timeout 15 docker info >/dev/null 2>&1 || die "Docker engine not answering; run scripts/docker-up.sh first"

if [ "${THEORYX_BASE_FORCE:-0}" != 1 ] && docker image inspect "$NAME" >/dev/null 2>&1; then
    say "$NAME already present ($(docker image inspect -f '{{.Id}}' "$NAME" | cut -c1-19)); nothing to do"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap/chroot)"

START=$(date +%s)

# Serialise concurrent builders; re-check after taking the lock.
mkdir -p /var/lib/theoryx
exec 9>/var/lib/theoryx/base-image.lock
flock -w 1800 9 || die "could not take /var/lib/theoryx/base-image.lock"
if [ "${THEORYX_BASE_FORCE:-0}" != 1 ] && docker image inspect "$NAME" >/dev/null 2>&1; then
    say "$NAME was built by a concurrent run; nothing to do"; exit 0
fi

# --- debootstrap ------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends debootstrap >&2 \
        || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends debootstrap >&2; } \
        || die "could not install debootstrap"
fi

# --- find the Debian mirror apt already uses --------------------------------
find_mirror() {
    local f line uris suites
    # one-line format: deb [opts] URI SUITE COMPONENTS...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        while read -r line; do
            line=$(echo "$line" | sed -e 's/#.*//' -e 's/\[[^]]*\]//')
            set -- $line
            [ "${1:-}" = deb ] && [ "${3:-}" = "$SUITE" ] && { echo "$2"; return 0; }
        done <"$f"
    done
    # deb822 format: stanzas with Types/URIs/Suites
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && enabled != "no") { split(uris, u, " "); print u[1]; found=1; exit } types=uris=suites=enabled="" }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "types:"   { $1=""; types=$0 }
            tolower($1) == "uris:"    { $1=""; uris=$0 }
            tolower($1) == "suites:"  { $1=""; suites=$0 }
            tolower($1) == "enabled:" { enabled=tolower($2) }
            END { if (!found) flush() }
        ' "$f" | sed 's/^ *//' | head -n1 | grep . && return 0
    done
    return 1
}
MIRROR="${THEORYX_DEBIAN_MIRROR:-$(find_mirror || true)}"
[ -n "$MIRROR" ] || die "no apt source for suite '$SUITE' found in /etc/apt; set THEORYX_DEBIAN_MIRROR"
say "building $NAME from $MIRROR ($SUITE)"

ROOTFS=$(mktemp -d /var/tmp/theoryx-rootfs.XXXXXX)
cleanup() {
    # debootstrap may leave proc/sys/dev (even bind) mounts behind on failure:
    # unmount everything under the rootfs before deleting, and never cross filesystems.
    local m
    for m in $(awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

INCLUDE="python3,ca-certificates${EXTRA:+,$EXTRA}"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >&2 \
    || { tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }

# --- non-root user ------------------------------------------------------------
if ! chroot "$ROOTFS" /usr/sbin/groupadd -g "$T_UID" "$T_USER" >&2 \
   || ! chroot "$ROOTFS" /usr/sbin/useradd -u "$T_UID" -g "$T_UID" -m -d "/home/$T_USER" -s /bin/sh "$T_USER" >&2; then
    say "useradd in chroot failed; editing passwd/group directly"
    grep -q "^$T_USER:" "$ROOTFS/etc/group"  || echo "$T_USER:x:$T_UID:" >>"$ROOTFS/etc/group"
    grep -q "^$T_USER:" "$ROOTFS/etc/passwd" || echo "$T_USER:x:$T_UID:$T_UID::/home/$T_USER:/bin/sh" >>"$ROOTFS/etc/passwd"
    [ -f "$ROOTFS/etc/shadow" ] && ! grep -q "^$T_USER:" "$ROOTFS/etc/shadow" && echo "$T_USER:!:19000::::::" >>"$ROOTFS/etc/shadow"
    mkdir -p "$ROOTFS/home/$T_USER"; chown "$T_UID:$T_UID" "$ROOTFS/home/$T_USER"; chmod 0755 "$ROOTFS/home/$T_USER"
fi

# --- slim down ---------------------------------------------------------------
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/debootstrap \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* 2>/dev/null || true
# Docker mounts its own /dev, /proc, /sys; ship them empty.
find "$ROOTFS/dev" -mindepth 1 -delete 2>/dev/null || true
: >"$ROOTFS/etc/hostname"

# --- import --------------------------------------------------------------------
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.theoryx.base=1 org.theoryx.suite=$SUITE org.theoryx.user=$T_USER:$T_UID" \
    --message "theoryx base: debootstrap minbase $SUITE +$INCLUDE" \
    - "$NAME" >&2 || die "docker import failed"

END=$(date +%s)
say "built $NAME ($(docker image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}')) in $((END - START)) s"
