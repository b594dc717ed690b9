#!/usr/bin/env bash
# install-deps.sh - install the Debian packages the build, the tests and the local stack need.
# Idempotent: prints nothing and changes nothing when every package is already present.
#
#   hack/install-deps.sh            what the build, the unit/integration suites and the node-less stack need
#   hack/install-deps.sh --image    also what `make image` needs (mmdebstrap, buildah, runc)
#   hack/install-deps.sh --node     also what the node of `make cluster-up NODE=1` needs
#                                   (containerd, runc, CNI plugins, iptables, ipset, conntrack, nft)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git python3 openssl ca-certificates
  libcurl4-openssl-dev libyaml-dev libjansson-dev libssl-dev libwebsockets-dev
  libpq-dev libcriterion-dev postgresql postgresql-contrib clang-format procps
  # hack/build-minlibs.sh: the static libcurl and libpq from Debian's source packages (dpkg-source,
  # dpkg-buildflags, patch), linked to the system's nghttp2; the -dev packages above choose the versions
  dpkg-dev patch libnghttp2-dev
  python3-jsonschema # an independent JSON Schema validator for the lifecycle events (tests/integration/test_outbox.c)
  lua5.1 # the Argo CD health check docs/gitops/tenant-health.lua (Lua 5.1, as Argo CD's gopher-lua), tests/integration/test_gitops.c
  prometheus # promtool: `promtool check rules` and `promtool test rules` of the alerts (hack/alerts-test.sh)
  chromium # the admin console's browser tests (tests/console, driven headless by playwright-core)
)
for a in "$@"; do
  case $a in
    --image) PKGS+=(mmdebstrap buildah runc) ;;
    --node) PKGS+=(mmdebstrap buildah containerd runc containernetworking-plugins iptables ipset conntrack nftables) ;;
    *) echo "install-deps: unknown argument $a" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql package starts a system cluster; we run our own in a state dir.
  # Debian's prometheus package starts a server on :9090 where systemd runs; only promtool is wanted.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  echo "install-deps: done"
fi

if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null || ! command -v npm >/dev/null; then
  echo "install-deps: Node.js >= 20 with npm is needed for the console's browser tests (tests/console); install nodejs from nodejs.org or NodeSource" >&2
  exit 1
fi

if ! command -v go >/dev/null; then
  echo "install-deps: the Go toolchain (>= 1.26) is needed to build the local control plane; install it from go.dev" >&2
  exit 1
fi
