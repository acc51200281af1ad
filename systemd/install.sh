#!/bin/sh
# Install facecluster as a systemd service, as systemd/facecluster.service expects it:
#   the system user "facecluster", /opt/facecluster (the venv, the models, README),
#   /etc/facecluster/config.toml (kept if present), /var/lib/facecluster (state, albums
#   and labels.toml, the service's only writable folder), /srv/photos (read only), the
#   unit, and /usr/local/bin/facecluster for the commands.
# Run as root from a checkout: sudo sh systemd/install.sh   (or: sudo make install-service)
# Then: systemctl enable --now facecluster
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/facecluster}
PYTHON=${PYTHON:-python3}
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo sh systemd/install.sh)" >&2; exit 1; }
"$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
    echo "install.sh: needs python3 >= 3.10 with its venv module (apt-get install python3-venv)" >&2
    exit 1
}

if ! id facecluster >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/facecluster --no-create-home \
        --shell /usr/sbin/nologin facecluster
fi
install -d -m 0755 "$PREFIX" /etc/facecluster
install -d -m 0750 -o facecluster -g facecluster \
    /var/lib/facecluster /var/lib/facecluster/state /var/lib/facecluster/albums
[ -e /srv/photos ] || install -d -m 0755 /srv/photos

# Exactly the locked versions, each checked against its hash, then the project itself.
[ -x "$PREFIX/.venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --require-hashes --no-deps \
    -r "$src/requirements.lock"
# Built from a copy, so the checkout gets no root-owned build/ or egg-info.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$src/daemon" "$src/pyproject.toml" "$src/README.md" "$build/"
"$PREFIX/.venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$build"
rm -rf "$PREFIX/models"
cp -r "$src/models" "$PREFIX/models"
rm -f "$PREFIX/models/.verified.json"
cp "$src/README.md" "$PREFIX/README.md"

if [ ! -e /etc/facecluster/config.toml ]; then
    install -m 0644 "$src/systemd/config.toml" /etc/facecluster/config.toml
fi
# Commands run by root act as the service's user, so labels.toml and the albums keep
# their owner; the config is the service's.
cat > /usr/local/bin/facecluster <<'WRAP'
#!/bin/sh
export FACECLUSTER_CONFIG="${FACECLUSTER_CONFIG:-/etc/facecluster/config.toml}"
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=facecluster --regid=facecluster --init-groups \
        /opt/facecluster/.venv/bin/facecluster "$@"
fi
exec /opt/facecluster/.venv/bin/facecluster "$@"
WRAP
chmod 0755 /usr/local/bin/facecluster
install -m 0644 "$src/systemd/facecluster.service" /etc/systemd/system/facecluster.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "installed; start it with: systemctl enable --now facecluster"
echo "photos go in /srv/photos, albums appear in /var/lib/facecluster/albums"
