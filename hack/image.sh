#!/usr/bin/env bash
# image.sh - build the operator image from the repository's Dockerfile without any image registry:
# the two base images the Dockerfile starts from are made here from the Debian apt mirror with
# mmdebstrap and imported into a private buildah store FROM scratch, then `buildah bud
# --pull=never --network=none` builds the Dockerfile against them (its multi-stage build: cmake in
# the Debian 12 build stage, the binaries on the library-only runtime base). The Debian source
# packages of the static libcurl and libpq the build stage compiles (hack/build-minlibs.sh) are
# downloaded here and staged in build/minlibs-src, in the build context.
#
#   hack/image.sh [build]          (make image) build $IMAGE, smoke-test it, print its size
#   hack/image.sh archive [FILE]   (make image-archive) build, then write an OCI archive
#                                  (default build/image/tenancy-operator-<version>.oci.tar)
#   hack/image.sh name             print the fully qualified image name (what the kubelet asks for)
#
# Env: IMAGE                  image name (default tenancy-operator:<chart appVersion>, the name the
#                             chart and manifests/deploy use)
#      TENANCY_IMAGE_REFRESH=1  rebuild the Debian base images (new security updates)
# Cache: $TENANCY_CACHE/image (buildah store; the bases are kept, keyed by their package lists).
set -euo pipefail
LOG_TAG=image
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

VERSION=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' charts/tenancy-operator/Chart.yaml)
IMAGE=${IMAGE:-tenancy-operator:$VERSION}
# The kubelet normalises a short name the Docker way (tenancy-operator:0.1.0 is
# docker.io/library/tenancy-operator:0.1.0); the archive carries that name so that
# `ctr images import` registers exactly what a Pod with `image: tenancy-operator:0.1.0` asks for.
fq_name() {
  local first=${1%%/*}
  case $1 in
    */*) case $first in *.* | *:* | localhost) echo "$1" ;; *) echo "docker.io/$1" ;; esac ;;
    *) echo "docker.io/library/$1" ;;
  esac
}
FQ=$(fq_name "$IMAGE")

buildah_init
B=("${BUILDAH[@]}")

# The apt sources this machine uses (a mirror or proxy configured here works for mmdebstrap too).
mirrors() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
    awk '$2 ~ /^bookworm/ { print "deb " $1 " " $2 " " $3 }' | sort -u
}

have_image() { "${B[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# The build base: a minimal Debian 12 with the Dockerfile's BUILD_PACKAGES installed.
build_base() {
  local pkgs key name work t0
  pkgs=$(sed -n 's/^ARG BUILD_PACKAGES="\(.*\)"$/\1/p' Dockerfile)
  [ -n "$pkgs" ] || die "no ARG BUILD_PACKAGES=\"...\" line in the Dockerfile"
  key=$(echo "$pkgs" | sha256sum | cut -c1-12)
  name=localhost/tenancy-operator-build-base:$key
  if [ "${TENANCY_IMAGE_REFRESH:-0}" = 1 ] || ! have_image "$name"; then
    t0=$SECONDS
    work=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-buildroot.XXXXXX")
    mapfile -t m < <(mirrors)
    log "making the build base from the apt mirror (mmdebstrap minbase + ${pkgs// /,}; ~2-4 min)"
    nice -n 10 mmdebstrap --variant=minbase --mode=root --quiet --include="${pkgs// /,}" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' bookworm "$work/build.tar" "${m[@]}" >&2
    local c
    c=$("${B[@]}" from --pull=never scratch)
    "${B[@]}" add --quiet "$c" "$work/build.tar" / >/dev/null
    "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    "${B[@]}" commit --quiet --rm "$c" "$name" >/dev/null
    rm -rf "$work"
    log "build base $name: $((SECONDS - t0)) s"
  fi
  echo "$name"
}

# The rootfs stage's image: the build base plus /rootfs from hack/image-rootfs.sh (keyed by that
# script, which lists the runtime packages, and by the build base).
rootfs_image() {
  local base=$1 key name work t0 c
  key=$( (cat hack/image-rootfs.sh; echo "$base") | sha256sum | cut -c1-12)
  name=localhost/tenancy-operator-rootfs:$key
  if [ "${TENANCY_IMAGE_REFRESH:-0}" = 1 ] || ! have_image "$name"; then
    t0=$SECONDS
    work=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-rootfs.XXXXXX")
    mapfile -t m < <(mirrors)
    nice -n 10 hack/image-rootfs.sh "$work/rootfs" "${m[@]}" >&2
    tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
    c=$("${B[@]}" from --pull=never "$base")
    "${B[@]}" add --quiet "$c" "$work/rootfs.tar" /rootfs >/dev/null
    "${B[@]}" commit --quiet --rm "$c" "$name" >/dev/null
    rm -rf "$work"
    log "runtime root filesystem $name: $((SECONDS - t0)) s"
  fi
  echo "$name"
}

# The Debian source packages of the static libcurl and libpq (hack/build-minlibs.sh) into the
# build context's build/minlibs-src, for the offline build stage: the versions this machine's
# builds and tests use (those of its libcurl4-openssl-dev and libpq-dev), not the build base's
# (made later from the mirror, it may have newer -dev packages, whose source the mirror may not
# serve yet), so the image's libcurl and libpq are the ones the tests ran with.
stage_minlibs() {
  "$HACK/build-minlibs.sh" fetch build/minlibs-src
}

build() {
  local t0=$SECONDS rb bb runc_root=0
  "$HACK/install-deps.sh" --image
  [ -e /run/runc ] && runc_root=1 # buildah's runc leaves its (empty) state root behind
  bb=$(build_base)
  rb=$(rootfs_image "$bb")
  stage_minlibs
  log "building $FQ from the Dockerfile (--pull=never --network=none)"
  nice -n 10 "${B[@]}" bud --quiet --pull=never --network=none --layers \
    --build-arg BUILD_IMAGE="$bb" --build-arg ROOTFS_IMAGE="$rb" --build-arg VERSION="$VERSION" \
    -t "$FQ" -f Dockerfile . >/dev/null
  # No shell in the image: run the binaries themselves (a missing library fails here).
  local c
  c=$("${B[@]}" from --pull=never "$FQ")
  "${B[@]}" run --network=none "$c" -- /usr/local/bin/tenancy-operator --version >/dev/null ||
    { "${B[@]}" rm "$c" >/dev/null; die "the image's tenancy-operator does not start"; }
  "${B[@]}" run --network=none "$c" -- /usr/local/bin/tenantctl --version >/dev/null ||
    { "${B[@]}" rm "$c" >/dev/null; die "the image's tenantctl does not start"; }
  if "${B[@]}" run --network=none "$c" -- /bin/sh -c true >/dev/null 2>&1; then
    "${B[@]}" rm "$c" >/dev/null
    die "the image has a shell"
  fi
  "${B[@]}" rm "$c" >/dev/null
  [ $runc_root = 1 ] || rmdir /run/runc 2>/dev/null || true
  # Drop what the previous build left untagged.
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
  log "built $FQ in $((SECONDS - t0)) s; image size $("${B[@]}" images --noheading --format '{{.Size}}' "$FQ")"
}

archive() {
  local out=${1:-$ROOT/build/image/tenancy-operator-$VERSION.oci.tar}
  build
  mkdir -p "$(dirname "$out")"
  rm -f "$out"
  "${B[@]}" push --quiet "$FQ" "oci-archive:$out:$FQ" >/dev/null
  log "wrote $out ($(du -h "$out" | cut -f1)): load it with 'ctr images import', 'skopeo copy' or 'podman load'"
  echo "$out"
}

case ${1:-build} in
  build) build ;;
  archive) archive "${2:-}" ;;
  name) echo "$FQ" ;;
  *) die "usage: $0 [build|archive [FILE]|name]" ;;
esac
