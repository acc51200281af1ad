#!/bin/sh
# Build a local stand-in for the official python image (no registry is reachable from
# CI): a minimal Debian bookworm with python3, made by mmdebstrap from Debian's
# packages and imported into podman. With "systemd" as the second argument the image
# also has systemd as its init, for testing the systemd unit as installed.
#   container/base.sh TAG [systemd]
set -eu
tag=$1
flavour=${2:-}
pkgs=python3,python3-venv,ca-certificates
if [ "$flavour" = systemd ]; then
    pkgs=$pkgs,systemd,systemd-sysv,dbus,procps
fi
tarball=$(mktemp --suffix=.tar)
trap 'rm -f "$tarball"' EXIT
mmdebstrap --quiet --variant=minbase --include="$pkgs" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$tarball" "${MIRROR:-http://deb.debian.org/debian}"
if [ "$flavour" = systemd ]; then
    podman import --change 'CMD ["/sbin/init"]' "$tarball" "$tag" >/dev/null
else
    podman import --change 'CMD ["python3"]' "$tarball" "$tag" >/dev/null
fi
echo "$tag"
