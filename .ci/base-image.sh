#!/usr/bin/env bash
# Make a local stand-in for the Dockerfile's public Python base image, for a machine that can
# pull no image: debootstrap a Debian bookworm root with python3, cache it as a tarball so
# later runs skip the ~1 minute debootstrap, `docker import` it, and add this machine's CA
# bundle so pip inside `docker build` trusts the intercepting proxy. The CA goes into this
# local base only, never into the project's Dockerfile.
#
# usage: .ci/base-image.sh [TAG]      (docker is reached through DOCKER_HOST as usual)
# env:   SELFCHECK_TEST_CACHE  where the rootfs tarball is kept (default /var/cache/selfcheck-test)
set -euo pipefail

tag=${1:-local/bookworm-python:latest}
cache=${SELFCHECK_TEST_CACHE:-/var/cache/selfcheck-test}
tarball="$cache/bookworm-python-rootfs.tar"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
sources=/etc/apt/sources.list.d/debian.sources

mkdir -p "$cache"

if [ ! -s "$tarball" ]; then
    # The first URIs line is the main archive; it is this machine's configured mirror, so
    # the script names no mirror of its own.
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' "$sources")
    [ -n "$mirror" ] || { echo "base-image: no URIs line in $sources" >&2; exit 1; }
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    trap - EXIT
fi

docker import "$tarball" "$tag-rootfs" >/dev/null

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$ca_bundle" "$ctx/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ctx/pip.conf"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $tag-rootfs
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet --network host -t "$tag" "$ctx" >/dev/null
echo "$tag"
