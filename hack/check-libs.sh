#!/usr/bin/env bash
# check-libs.sh - fail when a program loads a shared library that the static, minimal libcurl and
# libpq of hack/build-minlibs.sh exist to keep out of the process: Debian's shared libcurl and
# libpq themselves, or what they pull in (GnuTLS and its crypto, Kerberos, LDAP, SASL, p11-kit,
# RTMP, SSH, PSL, IDN, brotli, zstd...). docs/development.md, "Static libcurl and libpq".
#
#   hack/check-libs.sh PROGRAM...     prints one line per program; exit 1 when any loads one
set -euo pipefail

# Sonames (without .so...) that must not be loaded; ldd lists the whole dependency tree.
DROPPED='libcurl|libcurl-gnutls|libcurl-nss|libpq|libgnutls|libkrb5|libgssapi_krb5|libk5crypto|libkrb5support'
DROPPED+='|libcom_err|libkeyutils|libldap|libldap-2\.5|liblber|liblber-2\.5|libsasl2|libp11-kit|libnettle|libhogweed'
DROPPED+='|libgmp|libtasn1|libunistring|libidn2|libffi|librtmp|libssh2|libssh|libpsl|libbrotlidec|libbrotlicommon'
DROPPED+='|libzstd|libresolv'

[ $# -ge 1 ] || { echo "usage: $0 PROGRAM..." >&2; exit 2; }
bad=0
for p in "$@"; do
  [ -x "$p" ] || { echo "check-libs: $p: no such program" >&2; bad=1; continue; }
  libs=$(ldd "$p" | awk '{ print $1 }') || { echo "check-libs: ldd $p failed" >&2; bad=1; continue; }
  found=$(grep -E "^($DROPPED)\.so(\.|$)" <<<"$libs" | paste -sd' ' || true)
  if [ -n "$found" ]; then
    echo "check-libs: $p loads $found: is it linked against the system libcurl or libpq? (configure with -DTN_MINLIBS_PREFIX=\$(hack/build-minlibs.sh))"
    bad=1
  else
    echo "check-libs: $(basename "$p"): $(wc -l <<<"$libs") shared objects, none of libcurl4's or libpq5's"
  fi
done
exit $bad
