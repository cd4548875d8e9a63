#!/usr/bin/env bash
# Bring up a local Docker engine for theoryx's `local` adapter. Idempotent:
# a second call with a healthy daemon is a fast no-op.
#
#   1. If the engine (`dockerd`, not just a `docker` CLI) is missing, install
#      Debian's docker.io with apt-get.
#   2. If `docker info` already answers, exit 0.
#   3. Otherwise start dockerd detached (setsid + nohup, all fds redirected, so
#      it survives this shell and never holds the caller's stdout/stderr open),
#      and wait (bounded) for the socket and `docker info`.
#      Sandbox problems are probed up front and retried with fallbacks:
#        - iptables/nftables unusable  -> --iptables=false --ip6tables=false
#        - linux bridge unusable       -> --bridge=none
#        - overlay mounts unusable     -> fuse-overlayfs if present, else vfs
#        - no cgroup hierarchy mounted -> cgroupfs-mount (if installed)
#      The flags that worked are remembered in $STATE_FILE and tried first next time.
#
# Environment:
#   THEORYX_DOCKERD_LOG      daemon log (default /var/log/theoryx-dockerd.log)
#   THEORYX_DOCKERD_WAIT     seconds to wait per start attempt (default 60)
#   THEORYX_DOCKERD_FLAGS    extra flags passed to every dockerd attempt
#   THEORYX_DOCKERD_NO_INSTALL=1  never apt-get install, just fail
set -u -o pipefail

LOG="${THEORYX_DOCKERD_LOG:-/var/log/theoryx-dockerd.log}"
WAIT="${THEORYX_DOCKERD_WAIT:-60}"
EXTRA_FLAGS="${THEORYX_DOCKERD_FLAGS:-}"
STATE_DIR=/var/lib/theoryx
STATE_FILE="$STATE_DIR/dockerd.flags"
SOCK=/var/run/docker.sock
PIDFILE=/var/run/docker.pid
# dockerd, runc, containerd, iptables live in sbin; callers' PATH may lack it.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say()  { echo "docker-up: $*" >&2; }
die()  { say "ERROR: $*"; exit 1; }

engine_ok() { timeout 15 docker info >/dev/null 2>&1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root to $1 (try: sudo $0)"
}

# --- 0. fast path -----------------------------------------------------------
if command -v docker >/dev/null 2>&1 && engine_ok; then
    say "engine already up ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
    exit 0
fi

# --- 1. install the engine if missing ----------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    [ "${THEORYX_DOCKERD_NO_INSTALL:-0}" = 1 ] && die "dockerd not installed and THEORYX_DOCKERD_NO_INSTALL=1"
    need_root "install docker.io"
    command -v apt-get >/dev/null 2>&1 || die "dockerd missing and no apt-get to install it"
    say "dockerd not found; installing docker.io with apt-get (a docker CLI alone is not enough)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    # --no-install-recommends skips needrestart/apparmor/criu etc., which only get in the way here.
    apt-get install -y -qq --no-install-recommends docker.io ca-certificates >&2 \
        || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd still not on PATH"
fi
command -v docker >/dev/null 2>&1 || die "no docker CLI found (docker.io should provide /usr/bin/docker)"

need_root "start dockerd"

# Another dockerd may be starting right now (e.g. a concurrent call): give it a moment.
if pgrep -x dockerd >/dev/null 2>&1; then
    say "a dockerd process exists but does not answer yet; waiting up to ${WAIT}s"
    for _ in $(seq 1 "$WAIT"); do
        engine_ok && { say "engine up"; exit 0; }
        pgrep -x dockerd >/dev/null 2>&1 || break
        sleep 1
    done
    engine_ok && exit 0
    die "an existing dockerd (pid $(pgrep -x dockerd | tr '\n' ' ')) does not answer; see $LOG; stop it and retry"
fi

# Serialise concurrent starters.
mkdir -p "$STATE_DIR" "$(dirname "$LOG")"
exec 9>"$STATE_DIR/docker-up.lock"
flock -w "$((WAIT + 30))" 9 || die "could not take $STATE_DIR/docker-up.lock"
engine_ok && { say "engine came up while waiting for the lock"; exit 0; }

# --- 2. probe the sandbox ---------------------------------------------------
# cgroups
if ! grep -qE '^cgroup2? ' /proc/mounts; then
    say "no cgroup filesystem mounted; trying cgroupfs-mount"
    if command -v cgroupfs-mount >/dev/null 2>&1; then cgroupfs-mount >&2 || true
    else mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup >&2 || true; fi
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then CGROUP=v2
elif grep -q '^cgroup ' /proc/mounts; then CGROUP=v1
else CGROUP=none; fi

# iptables: dockerd needs a working iptables binary + kernel support for the NAT table.
IPT_FLAGS=""
if ! command -v iptables >/dev/null 2>&1 || ! iptables -t nat -L -n >/dev/null 2>&1 \
        || ! iptables -t filter -L -n >/dev/null 2>&1; then
    IPT_FLAGS="--iptables=false --ip6tables=false"
fi
# ip6tables can be broken while iptables is fine.
if [ -z "$IPT_FLAGS" ] && ! { command -v ip6tables >/dev/null 2>&1 && ip6tables -t filter -L -n >/dev/null 2>&1; }; then
    IPT_FLAGS="--ip6tables=false"
fi

# bridge: docker0 needs the bridge driver
BRIDGE_FLAGS=""
if ! ip link show docker0 >/dev/null 2>&1; then
    if command -v ip >/dev/null 2>&1; then
        if ip link add theoryx-probe0 type bridge >/dev/null 2>&1; then
            ip link del theoryx-probe0 >/dev/null 2>&1 || true
        else
            BRIDGE_FLAGS="--bridge=none"
        fi
    fi
fi

# storage: overlay2 needs overlay mounts on top of the data-root filesystem.
DATA_ROOT=/var/lib/docker
mkdir -p "$DATA_ROOT"
probe_overlay() {
    local d; d=$(mktemp -d "$DATA_ROOT/.theoryx-overlay-probe.XXXXXX") || return 1
    mkdir -p "$d"/{l,u,w,m}
    local ok=1
    if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" >/dev/null 2>&1; then
        ok=0; umount "$d/m" >/dev/null 2>&1 || true
    fi
    rm -rf "$d"; return $ok
}
# A previous data-root already pins a driver; reuse it so existing images stay visible.
PRIOR_DRIVER=""
for drv in overlay2 fuse-overlayfs vfs; do
    if [ -d "$DATA_ROOT/$drv" ] && [ -n "$(ls -A "$DATA_ROOT/$drv" 2>/dev/null)" ]; then PRIOR_DRIVER=$drv; break; fi
done
if probe_overlay; then OVERLAY_OK=1; else OVERLAY_OK=0; fi
say "probe: cgroup=$CGROUP overlay=$([ $OVERLAY_OK = 1 ] && echo ok || echo no) iptables=${IPT_FLAGS:-ok} bridge=${BRIDGE_FLAGS:-ok} prior-driver=${PRIOR_DRIVER:-none}"

# --- 3. candidate flag sets, best first --------------------------------------
CANDIDATES=()
[ -s "$STATE_FILE" ] && CANDIDATES+=("$(cat "$STATE_FILE")")
storage_pref=()
[ -n "$PRIOR_DRIVER" ] && storage_pref+=("--storage-driver=$PRIOR_DRIVER")
[ "$OVERLAY_OK" = 1 ] && storage_pref+=("--storage-driver=overlay2")
command -v fuse-overlayfs >/dev/null 2>&1 && [ -e /dev/fuse ] && storage_pref+=("--storage-driver=fuse-overlayfs")
storage_pref+=("--storage-driver=vfs")
base="$IPT_FLAGS $BRIDGE_FLAGS"
for s in "${storage_pref[@]}"; do CANDIDATES+=("$(echo $base $s)"); done
# Broader fallbacks in case the probes were too optimistic.
for s in "${storage_pref[@]}"; do
    CANDIDATES+=("$(echo --iptables=false --ip6tables=false $BRIDGE_FLAGS $s)")
done
CANDIDATES+=("--iptables=false --ip6tables=false --bridge=none --storage-driver=vfs")
# de-duplicate, keep order
declare -A seen=(); uniq=()
for c in "${CANDIDATES[@]}"; do [ -n "${seen[$c]:-}" ] && continue; seen[$c]=1; uniq+=("$c"); done

start_dockerd() {  # $1 = flags; prints pid
    rm -f "$PIDFILE"  # a stale pidfile makes dockerd refuse to start
    [ -S "$SOCK" ] && ! engine_ok && rm -f "$SOCK"
    {
        echo
        echo "===== $(date -Is) docker-up.sh: dockerd $1 $EXTRA_FLAGS"
    } >>"$LOG"
    # Fully detached: new session, stdin from /dev/null, stdout/stderr to the log,
    # every other inherited fd (CI pipes, our lock on fd 9) closed.
    # shellcheck disable=SC2086
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        exec setsid nohup dockerd $1 $EXTRA_FLAGS </dev/null >>"$LOG" 2>&1
    ) </dev/null >/dev/null 2>&1 &
    echo $!
}

for flags in "${uniq[@]}"; do
    say "starting dockerd $flags $EXTRA_FLAGS (log: $LOG)"
    pid=$(start_dockerd "$flags")
    disown "$pid" 2>/dev/null || true
    up=0
    for _ in $(seq 1 "$WAIT"); do
        if [ -S "$SOCK" ] && engine_ok; then up=1; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            # setsid may have forked: follow dockerd's own pidfile.
            if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then pid=$(cat "$PIDFILE")
            else break; fi
        fi
        sleep 1
    done
    if [ "$up" = 1 ]; then
        echo "$flags" >"$STATE_FILE"
        say "engine up: $(docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}} ({{.CgroupDriver}})' 2>/dev/null), flags: ${flags:-none}"
        exit 0
    fi
    say "dockerd with '$flags' did not come up; last log lines:"
    tail -n 5 "$LOG" | sed 's/^/    /' >&2
    # Stop that attempt (only the process we started) before trying the next flags.
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    [ "$(cat "$STATE_FILE" 2>/dev/null)" = "$flags" ] && rm -f "$STATE_FILE"
done

die "could not get a Docker engine up with any flag set; see $LOG"
