#!/bin/sh
# rok's container entrypoint (see the Dockerfile).
#
#   docker run rok                    serve the API on 0.0.0.0:8000, keys required
#   docker run rok --port 9000        the same, with more `rok serve` options
#   docker run rok keys create --tenant acme --scope admin     any other rok command
#
# ROK_MIGRATE=1 upgrades the schema first (`rok db upgrade`): replicas started
# together take turns, so every replica may ask. Unset or 0, a schema behind the
# code stops `rok serve` with a message saying what to run. Every other ROK_*
# variable reaches rok as it is; ROK_AUTH=off is refused, since rok serves it on
# loopback only. rok replaces this shell (exec), so it is the process that gets
# the container's SIGTERM and shuts down gracefully.
set -eu

case "${ROK_MIGRATE:-0}" in
    1) rok db upgrade ;;
    0) ;;
    *)
        echo "rok-entrypoint: ROK_MIGRATE must be 1 (upgrade the schema first) or 0, not '${ROK_MIGRATE}'" >&2
        exit 2
        ;;
esac

# no arguments, or only options: serve
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec rok serve --host 0.0.0.0 --port 8000 "$@"
fi
exec rok "$@"
