#!/usr/bin/env bash
# build-minlibs.sh - static, minimal libcurl and libpq, built from Debian's own source packages
# (the versions of the installed libcurl4-openssl-dev and libpq-dev, Debian's patches applied),
# so that the operator does not map the ~4 MiB of libraries Debian's shared libcurl4 and libpq5
# pull in and never use (GnuTLS, Kerberos, LDAP, SASL, RTMP, SSH, PSL, IDN, brotli, zstd...).
# Kept: OpenSSL, nghttp2 and zlib (shared, from the system); HTTP/HTTPS and proxies in curl;
# TLS in libpq. See docs/development.md, "Static libcurl and libpq".
#
#   hack/build-minlibs.sh                   build when not up to date, print the prefix on stdout
#                                           (CMake: -DTN_MINLIBS_PREFIX=<prefix>)
#   hack/build-minlibs.sh fetch DIR [SRCPKG=VERSION...]
#                                           download the source packages (.dsc and its files) into
#                                           DIR, by default those of the installed -dev packages,
#                                           and write their SRCPKG=VERSION to DIR/versions
#   hack/build-minlibs.sh versions          print the SRCPKG=VERSION to build, one a line
#
# Env: TENANCY_MINLIBS_SRC=DIR   take the source packages from DIR (what `fetch` wrote) and never
#                                use the network (the image's offline build stage)
#      TENANCY_MINLIBS_VERSIONS="curl=V postgresql-15=V"   build these versions, not those of the
#                                installed libcurl4-openssl-dev and libpq-dev (the image's build
#                                stage: the versions `make image` staged, those of this machine)
#      TENANCY_CACHE             as in hack/lib.sh; the prefix is $TENANCY_CACHE/minlibs-<key>, the
#                                key hashing the two source versions and this script
# Up to date (the prefix's stamp matches the key): prints the prefix only and does nothing else.
# Logs go to stderr. Self-contained (no hack/lib.sh): the Dockerfile's build stage runs it alone.
set -euo pipefail
# A make above us (make build) must not reach the libraries' makes: PostgreSQL's generates its
# headers only in a top-level make (MAKELEVEL 0).
unset MAKEFLAGS MFLAGS MAKELEVEL

TENANCY_CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
DEBIAN_SUITE=bookworm
# The default CA locations of Debian's curl (and so of the system libcurl this replaces).
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CA_PATH=/etc/ssl/certs

log() { printf '[minlibs %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# dev_source DEVPKG: SRCPKG=VERSION of the installed DEVPKG's source package.
dev_source() {
  local s
  s=$(dpkg-query -W -f='${db:Status-Status} ${source:Package}=${source:Version}' "$1" 2>/dev/null || true)
  [[ $s == "installed "* ]] ||
    die "$1 is not installed (hack/install-deps.sh installs it): its version chooses the source package to build"
  echo "${s#installed }"
}
versions() {
  if [ -n "${TENANCY_MINLIBS_VERSIONS:-}" ]; then
    local v=($TENANCY_MINLIBS_VERSIONS)
    [[ ${#v[@]} == 2 && ${v[0]} == curl=?* && ${v[1]} == postgresql-*=?* ]] ||
      die "TENANCY_MINLIBS_VERSIONS='$TENANCY_MINLIBS_VERSIONS' is not 'curl=VERSION postgresql-NN=VERSION'"
    printf '%s\n' "${v[@]}"
    return
  fi
  dev_source libcurl4-openssl-dev
  dev_source libpq-dev
}

# lock: one build or download at a time per cache (fd 9 stays open until exit).
lock() {
  mkdir -p "$TENANCY_CACHE"
  exec 9>"$TENANCY_CACHE/minlibs.lock"
  flock 9
}

# dsc_files DSC: the files a .dsc lists (Checksums-Sha256), one a line.
dsc_files() { awk '/^Checksums-Sha256:/ { f = 1; next } /^[^ ]/ { f = 0 } f && NF == 3 { print $3 }' "$1"; }
# dsc_name SRCPKG=VERSION: the .dsc file name (no epoch in file names).
dsc_name() { local v=${1#*=}; echo "${1%%=*}_${v#*:}.dsc"; }
# have_source DIR SRCPKG=VERSION: DIR holds that .dsc and every file it lists.
have_source() {
  local d=$1 dsc f
  dsc=$d/$(dsc_name "$2")
  [ -f "$dsc" ] || return 1
  for f in $(dsc_files "$dsc"); do [ -f "$d/$f" ] || return 1; done
}

# download DIR SRCPKG=VERSION...: fetch the source packages missing in DIR from the deb-src side of
# the mirrors this machine's apt uses (bookworm suites only), with private apt lists and caches:
# the system's apt configuration and state are not touched.
download() {
  local dir=$1 s missing=() apt_dir
  shift
  for s in "$@"; do have_source "$dir" "$s" || missing+=("$s"); done
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get is needed to download ${missing[*]}"
  command -v dpkg-source >/dev/null || die "dpkg-source is needed (package dpkg-dev)"
  apt_dir=$TENANCY_CACHE/minlibs-apt
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$dir"
  local signed=""
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && signed=" [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
  # indextargets lists what `apt-get update` would fetch, from the configured sources (no lists needed).
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
    awk -v s="$signed" -v suite="$DEBIAN_SUITE" '$2 ~ "^" suite { print "deb-src" s " " $1 " " $2 " " $3 }' |
    sort -u > "$apt_dir/sources.list"
  [ -s "$apt_dir/sources.list" ] || die "no $DEBIAN_SUITE apt source is configured on this machine (apt-get indextargets): cannot download ${missing[*]}"
  local apt=(apt-get -q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  log "downloading ${missing[*]} (deb-src of $(awk '{ print $(NF-2) " " $(NF-1) }' "$apt_dir/sources.list" | paste -sd, | sed 's/,/, /g'))"
  "${apt[@]}" update >"$apt_dir/update.log" 2>&1 || { cat "$apt_dir/update.log" >&2; die "apt-get update of the deb-src lists failed"; }
  for s in "${missing[@]}"; do
    if ! (cd "$dir" && "${apt[@]}" source --download-only "$s") >"$apt_dir/source.log" 2>&1; then
      grep -E '^(E|Err|W):' "$apt_dir/source.log" >&2 || cat "$apt_dir/source.log" >&2
      local listed
      listed=$("${apt[@]/apt-get/apt-cache}" showsrc --only-source "${s%%=*}" 2>/dev/null |
        awk '$1 == "Version:" { print $2 }' | sort -u -V -r | paste -sd' ' || true)
      die "cannot download the source package ${s%%=*} ${s#*=}, the version of the installed -dev package (libcurl4-openssl-dev for curl, libpq-dev for postgresql-15), from the deb-src mirrors above (their indexes list: ${listed:-none}). The static libraries are only built from the exact source of the installed version: install a -dev version whose source the mirrors serve (apt-get install libpq-dev=VERSION libpq5=VERSION, or libcurl4-openssl-dev=VERSION libcurl4=VERSION), or bring the source package files into a directory and set TENANCY_MINLIBS_SRC to it"
    fi
    have_source "$dir" "$s" || die "apt-get source $s left no complete $(dsc_name "$s") in $dir"
  done
  rm -rf "$apt_dir"
}

# fetch DIR SRCPKG=VERSION...: DIR holds these source packages, and no other source package files
# (the downloads are kept in $TENANCY_CACHE/minlibs-src).
fetch() {
  local out=$1 s f v srcs want=()
  shift
  if [ $# -gt 0 ]; then
    srcs=("$@")
  else
    v=$(versions)
    mapfile -t srcs <<<"$v"
  fi
  for s in "${srcs[@]}"; do [[ $s == ?*=?* ]] || die "fetch: '$s' is not SRCPKG=VERSION"; done
  lock
  download "$TENANCY_CACHE/minlibs-src" "${srcs[@]}"
  mkdir -p "$out"
  for s in "${srcs[@]}"; do
    for f in "$(dsc_name "$s")" $(dsc_files "$TENANCY_CACHE/minlibs-src/$(dsc_name "$s")"); do
      want+=("$f")
      cmp -s "$TENANCY_CACHE/minlibs-src/$f" "$out/$f" || cp -p "$TENANCY_CACHE/minlibs-src/$f" "$out/$f"
    done
  done
  for f in "$out"/*.dsc "$out"/*.tar.* "$out"/*.diff.gz; do # other versions' (nothing else is removed)
    [ -f "$f" ] || continue
    [[ " ${want[*]} " == *" ${f##*/} "* ]] || rm -f "$f"
  done
  # Rewritten only when it changes: an image build's COPY layer cache sees file times.
  [ "$(cat "$out/versions" 2>/dev/null)" = "${srcs[*]}" ] || echo "${srcs[*]}" >"$out/versions"
}

# build_curl SRC PREFIX: libcurl.a with HTTP(S) only (proxies included), OpenSSL, nghttp2, zlib.
# Debian's packaging builds its openssl flavour from the tree without its last two patches (they
# rename the library for the GnuTLS and NSS flavours): they are reverted here as debian/rules
# does. Debian also runs ./buildconf; the orig tarball's configure is used here (the patches that
# touch configure.ac or Makefile.am only change how curl-config and the shared library link).
build_curl() {
  local src=$1 prefix=$2 p
  for p in 99_nss.patch 90_gnutls.patch; do
    [ -f "$src/debian/patches/$p" ] || die "curl: debian/patches/$p is gone: check how this Debian version builds its openssl flavour"
    patch -d "$src" -R -p1 -s <"$src/debian/patches/$p" || die "curl: cannot revert $p"
  done
  log "curl: configure"
  (cd "$src" && ./configure --prefix="$prefix" --disable-dependency-tracking --disable-shared --enable-static --with-pic \
    --enable-threaded-resolver --with-openssl --with-nghttp2 --with-zlib \
    --without-libidn2 --without-libpsl --without-librtmp --without-libssh2 --without-libssh --without-brotli \
    --without-zstd --without-gssapi --without-libgsasl --disable-ldap --disable-ldaps --disable-dict --disable-file \
    --disable-ftp --disable-gopher --disable-imap --disable-mqtt --disable-pop3 --disable-rtsp --disable-smb \
    --disable-smtp --disable-telnet --disable-tftp --disable-manual --disable-ntlm --disable-ntlm-wb --disable-tls-srp \
    --with-ca-bundle="$CA_BUNDLE" --with-ca-path="$CA_PATH") >"$WORK/curl-configure.log" 2>&1 ||
    fail curl-configure
  log "curl: make"
  nice -n 10 make -C "$src/lib" -j "$(nproc)" >"$WORK/curl-make.log" 2>&1 || fail curl-make
  { make -C "$src/lib" install && make -C "$src/include" install && make -C "$src" install-pkgconfigDATA; } \
    >"$WORK/curl-install.log" 2>&1 || fail curl-install
}

# build_pq SRC PREFIX VERSION: libpq.a with OpenSSL, without GSSAPI, LDAP, PAM, NLS: configure the
# tree (the Debian flags that matter to libpq: the pg_service.conf directory, the port; Debian's
# patches give the /var/run/postgresql socket directory), build src/interfaces/libpq with the
# PIC ("_shlib") variants of src/common and src/port it links.
build_pq() {
  local src=$1 prefix=$2 pc
  log "postgresql: configure"
  (cd "$src" && ./configure --prefix="$prefix" --sysconfdir=/etc/postgresql-common --with-pgport=5432 \
    --with-ssl=openssl --without-gssapi --without-ldap --without-pam --without-readline --without-zlib \
    --without-icu --without-libxml --without-systemd --disable-nls --enable-thread-safety) \
    >"$WORK/pq-configure.log" 2>&1 || fail pq-configure
  log "postgresql: make (src/interfaces/libpq, src/common, src/port)"
  { nice -n 10 make -C "$src/src/backend" generated-headers &&
    nice -n 10 make -C "$src/src/interfaces/libpq" -j "$(nproc)"; } >"$WORK/pq-make.log" 2>&1 || fail pq-make
  { make -C "$src/src/interfaces/libpq" install &&
    install -m 644 "$src/src/include/postgres_ext.h" "$src/src/include/pg_config_ext.h" "$prefix/include/" &&
    install -m 644 "$src/src/common/libpgcommon_shlib.a" "$src/src/port/libpgport_shlib.a" "$prefix/lib/"; } \
    >"$WORK/pq-install.log" 2>&1 || fail pq-install
  rm -f "$prefix"/lib/libpq.so*
  # Static only: what libpq.pc keeps in Libs.private goes to Libs (pkg-config --libs without
  # --static, as CMake's pkg_check_modules asks), with the PIC variants of libpgcommon/libpgport,
  # and Requires.private (OpenSSL) to Requires.
  pc=$prefix/lib/pkgconfig/libpq.pc
  [ -f "$pc" ] || die "postgresql: no libpq.pc installed"
  awk '/^Libs: / { libs = $0; next } /^Libs.private: / { priv = substr($0, 15); next }
       /^Requires: / { req = substr($0, 11); next } /^Requires.private: / { reqp = substr($0, 19); next } { print }
       END { sub(/-lpgcommon( |$)/, "-lpgcommon_shlib ", priv); sub(/-lpgport( |$)/, "-lpgport_shlib ", priv)
             print "Requires: " req " " reqp; print libs " " priv }' "$pc" >"$pc.new" && mv "$pc.new" "$pc"
  ! grep -qE -- '-l(gssapi|krb5|ldap|lber)' "$pc" || die "postgresql: libpq.pc links GSSAPI or LDAP: $(grep '^Libs' "$pc")"
  [ "$(awk -F': ' '$1 == "Version" { print $2 }' "$pc")" = "$3" ] || die "postgresql: libpq.pc is not version $3"
}

# fail STEP: the end of that step's log, and where the rest is.
fail() {
  tail -n 40 "$WORK/$1.log" >&2
  die "$1 failed (log: $WORK/$1.log)"
}

# extract DIR SRCPKG=VERSION NAME: dpkg-source -x (checks the files against the .dsc, applies
# Debian's patches) into $WORK/NAME.
extract() {
  local d=$1 s=$2 name=$3
  command -v dpkg-source >/dev/null || die "dpkg-source is needed (package dpkg-dev)"
  have_source "$d" "$s" || die "$d has no complete $(dsc_name "$s") ('hack/build-minlibs.sh fetch $d' writes it)"
  dpkg-source -x "$d/$(dsc_name "$s")" "$WORK/$name" >"$WORK/$name-extract.log" 2>&1 || fail "$name-extract"
}

build() {
  local srcs key prefix stamp_text d v
  v=$(versions)
  mapfile -t srcs <<<"$v"
  key=$({ printf '%s\n' "${srcs[@]}"; sha256sum <"$SELF"; } | sha256sum | cut -c1-12)
  prefix=$TENANCY_CACHE/minlibs-$key
  stamp_text=$(printf 'key %s\n%s\n' "$key" "${srcs[*]}")
  if [ "$(cat "$prefix/.stamp" 2>/dev/null)" = "$stamp_text" ]; then echo "$prefix"; return 0; fi
  lock # another build of the same key may be under way: wait for it, then look again
  if [ "$(cat "$prefix/.stamp" 2>/dev/null)" = "$stamp_text" ]; then echo "$prefix"; return 0; fi
  local t0=$SECONDS
  log "building static libcurl and libpq from ${srcs[*]} into $prefix (~2-3 min)"
  d=${TENANCY_MINLIBS_SRC:-}
  if [ -z "$d" ]; then
    d=$TENANCY_CACHE/minlibs-src
    download "$d" "${srcs[@]}"
  fi
  WORK=$prefix.work
  rm -rf "$prefix" "$WORK"
  mkdir -p "$WORK" "$prefix/lib" "$prefix/include"
  # Debian's build flags (hardening: stack protector, _FORTIFY_SOURCE).
  export CFLAGS CPPFLAGS LDFLAGS
  CFLAGS=$(dpkg-buildflags --get CFLAGS) CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS) LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
  extract "$d" "${srcs[0]}" curl
  extract "$d" "${srcs[1]}" postgresql
  build_curl "$WORK/curl" "$prefix"
  build_pq "$WORK/postgresql" "$prefix" "$(echo "${srcs[1]#*=}" | sed -E 's/^[0-9]+://; s/-[^-]*$//')"
  rm -rf "$WORK" "$prefix/share" "$prefix/bin" "$prefix"/lib/*.la
  echo "$stamp_text" >"$prefix/.stamp"
  log "built $prefix in $((SECONDS - t0)) s"
  echo "$prefix"
}

case ${1:-build} in
  build) build ;;
  fetch) [ $# -ge 2 ] || die "usage: $0 fetch DIR [SRCPKG=VERSION...]"; shift; fetch "$@" ;;
  versions) versions ;;
  *) die "usage: $0 [build | fetch DIR [SRCPKG=VERSION...] | versions]" ;;
esac
