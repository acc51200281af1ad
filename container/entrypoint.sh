#!/bin/sh
# The container's start: make the folders the service writes belong to PUID:PGID, put a
# config.toml in /config on first start (yours to edit from then on), then exec the
# command, so facecluster is PID 1 and gets `docker stop`'s SIGTERM directly.
set -eu
PUID=${PUID:-1000}
PGID=${PGID:-1000}
case "$PUID$PGID" in *[!0-9]*|'') echo "PUID and PGID must be numbers" >&2; exit 2 ;; esac
if [ "$(id -u)" = 0 ]; then
    for dir in /albums /state /config; do
        mkdir -p "$dir"
        # Only the folder itself: what is inside is already the service's or the user's.
        if [ "$(stat -c %u:%g "$dir")" != "$PUID:$PGID" ]; then
            chown "$PUID:$PGID" "$dir"
        fi
    done
    # The commonest container mistake: photos the service's user may not read. The
    # service would then find no photos and say nothing about why.
    if ! setpriv --reuid="$PUID" --regid="$PGID" --clear-groups test -r /photos -a -x /photos
    then
        echo "facecluster: WARNING: user $PUID:$PGID cannot read /photos;" \
             "set PUID/PGID to the owner of your photos (or make them readable)" >&2
    fi
fi
if [ ! -e /config/config.toml ]; then
    cp /etc/facecluster/config.toml /config/config.toml
    [ "$(id -u)" != 0 ] || chown "$PUID:$PGID" /config/config.toml
    echo "facecluster: wrote /config/config.toml (the defaults for this image; edit it freely)"
fi
case "${1:-run}" in
    -*|run|scan|status|people|name|merge|hide|not|export|import|rebuild|web|models|worker|cluster)
        exec /usr/local/bin/facecluster "$@" ;;
    *)  exec "$@" ;;
esac
