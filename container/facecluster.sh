#!/bin/sh
# `facecluster` inside the image. Run as root (the entrypoint, `docker exec`), it first
# becomes PUID:PGID, so every file it writes (albums, state, labels.toml) belongs to
# the owner of the host folders. setpriv (util-linux, in every Debian) switches the ids
# and drops every capability before exec.
if [ "$(id -u)" = 0 ] && [ "${PUID:-1000}" != 0 ]; then
    export HOME=/tmp
    exec setpriv --reuid="${PUID:-1000}" --regid="${PGID:-1000}" --clear-groups \
        --no-new-privs --inh-caps=-all --bounding-set=-all \
        /opt/facecluster/venv/bin/python -m daemon "$@"
fi
exec /opt/facecluster/venv/bin/python -m daemon "$@"
