#!/usr/bin/env bash
# Remove every container theoryx created (label theoryx.managed=1), running or not.
# Leaves the engine, images and other containers alone. Safe to run repeatedly.
set -u -o pipefail
command -v docker >/dev/null 2>&1 || { echo "docker-down: no docker CLI; nothing to do" >&2; exit 0; }
if ! timeout 15 docker info >/dev/null 2>&1; then
    echo "docker-down: engine not answering; nothing to do" >&2; exit 0
fi
ids=$(docker ps -aq --filter label=theoryx.managed=1)
if [ -z "$ids" ]; then
    echo "docker-down: no theoryx containers" >&2; exit 0
fi
echo "docker-down: removing $(echo "$ids" | wc -l) theoryx container(s)" >&2
echo "$ids" | xargs -r docker rm -f >/dev/null
