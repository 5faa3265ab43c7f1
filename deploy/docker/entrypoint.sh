#!/bin/sh
# `drover serve` in a container. The daemon binds one address per endpoint and refuses a
# wildcard (clients are told the addresses it binds), so it binds the container's own address:
# DROVER_ADDR if set, else the first address `hostname -i` gives. DROVER_CONTROL, DROVER_PUB and
# DROVER_HTTP, when set, are used as they are. The arguments (the image's CMD) follow `serve`.
set -eu
if [ -z "${DROVER_CONTROL:-}" ] || [ -z "${DROVER_PUB:-}" ] || [ -z "${DROVER_HTTP:-}" ]; then
    addr=${DROVER_ADDR:-$(hostname -i | cut -d ' ' -f 1)}
    if [ -z "$addr" ]; then
        echo "drover-entrypoint: no address for the daemon: set DROVER_ADDR" >&2
        exit 1
    fi
    case $addr in
        *:*) host="[$addr]" ;;
        *) host=$addr ;;
    esac
    DROVER_CONTROL=${DROVER_CONTROL:-tcp://$host:7710}
    DROVER_PUB=${DROVER_PUB:-tcp://$host:7711}
    DROVER_HTTP=${DROVER_HTTP:-$host:7712}
fi
export DROVER_CONTROL DROVER_PUB DROVER_HTTP
exec drover serve "$@"
