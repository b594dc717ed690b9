#!/usr/bin/env bash
# image-rootfs.sh - the runtime root filesystem of the operator image: the shared libraries the
# two binaries link, with their dependencies, extracted from Debian 12 packages by mmdebstrap, and
# nothing else: no shell, no package manager, no perl, no documentation but the copyright files.
# One script for both builds: the Dockerfile's `rootfs` stage runs it inside a debian:bookworm
# container, and hack/image.sh runs it on this machine for the offline build.
#
#   hack/image-rootfs.sh DIR [MIRROR...]      DIR must not exist or be empty
#
# The packages are extracted, not installed (mmdebstrap --variant=extract): no maintainer script
# runs, so this script does their work itself: the CA bundle (update-ca-certificates), passwd and
# group with the numeric user 65532, and a dpkg status.d per package so image scanners still see
# which Debian packages (and versions) the image carries.
set -euo pipefail

# The libraries of `ldd tenancy-operator tenantctl`, by package; apt adds their dependencies.
# libcurl and libpq are linked in statically (hack/build-minlibs.sh): not libcurl4 nor libpq5 and
# what they pull in (Kerberos, LDAP, GnuTLS...), but the libraries the static ones link: nghttp2, zlib.
RUNTIME_PACKAGES=libc6,libnghttp2-14,zlib1g,libjansson4,libyaml-0-2,libwebsockets17,libssl3,ca-certificates
SUITE=bookworm
IMAGE_UID=65532

prune() {
  local r=$1 deb pkg
  # Package metadata for scanners (the distroless layout: one control paragraph per package).
  mkdir -p "$r/var/lib/dpkg/status.d"
  for deb in "$r"/var/cache/apt/archives/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package)
    [ "$pkg" = debconf ] && continue # ca-certificates' configuration tool: removed below
    { dpkg-deb -f "$deb" Package Version Architecture Source Maintainer Homepage
      echo "Status: install ok installed"; } > "$r/var/lib/dpkg/status.d/$pkg"
  done
  # What update-ca-certificates would write with the default configuration (every Mozilla root).
  mkdir -p "$r/etc/ssl/certs"
  cat "$r"/usr/share/ca-certificates/mozilla/*.crt > "$r/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/nonexistent:/sbin/nologin\n' \
    "$IMAGE_UID" "$IMAGE_UID" > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$IMAGE_UID" > "$r/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$r/etc/nsswitch.conf"
  # Programs (openssl, update-ca-certificates, debconf's perl), documentation, translations,
  # gconv modules (the binaries only speak UTF-8), what apt, dpkg and debconf keep, and the device
  # nodes (the container runtime provides /dev).
  find "$r/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
  find "$r/usr/share/doc" -type d -empty -delete 2>/dev/null || true
  rm -rf "$r/bin" "$r/sbin" "$r/usr/bin" "$r/usr/sbin" "$r/usr/games" \
    "$r"/usr/share/{man,info,locale,lintian,perl5,debconf,bash-completion,pixmaps,ca-certificates} \
    "$r/usr/lib/x86_64-linux-gnu/gconv" "$r/usr/lib/ssl/misc" \
    "$r"/etc/{apt,dpkg,ca-certificates,ca-certificates.conf,debconf.conf,fstab,hostname,resolv.conf} \
    "$r"/var/lib/{apt,dpkg/info,dpkg/available,dpkg/status,dpkg/arch,dpkg/cmethopt} "$r/var/log" "$r/var/cache" \
    "$r/usr/share/doc/debconf" "$r"/dev/*
  mkdir -p -m 1777 "$r/tmp"
}

[ $# -ge 1 ] || { echo "usage: $0 DIR [MIRROR...]" >&2; exit 2; }
target=$1
shift
# chrootless: nothing is mounted and no device node is made, so this also runs inside an
# unprivileged `docker build`; the extract variant runs no maintainer script anyway. The
# downloaded packages stay (skip cleanup/apt/cache) for prune's status.d, which then drops them.
mmdebstrap --variant=extract --mode=chrootless --quiet --skip=cleanup/apt/cache \
  --include="$RUNTIME_PACKAGES" "$SUITE" "$target" "$@"
prune "$target"
