# syntax=docker/dockerfile:1
# Dockerfile - the tenancy-operator image: tenancy-operator (the entrypoint) and tenantctl, built
# on Debian 12, on a runtime root filesystem that holds only the shared libraries they link (and
# the CA bundle): no shell, no package manager. Runs as the numeric user 65532.
#
#   docker build -t tenancy-operator:0.1.0 .       anywhere BuildKit (or podman/buildah) builds;
#                                                  pulls debian:bookworm-slim, uses the apt mirror
#   make image                                     the same file, offline (no registry): the two
#                                                  base images come from mmdebstrap, see hack/image.sh
#
# Stages: `rootfs` makes the runtime root filesystem /rootfs with hack/image-rootfs.sh (mmdebstrap:
# the libraries extracted from Debian packages), `build` compiles the static, minimal libcurl and
# libpq (hack/build-minlibs.sh) and then the programs with cmake, and the last stage is that tree
# FROM scratch plus the two binaries.

# The Debian 12 image the rootfs and build stages start from.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
# The build stage's image. hack/image.sh passes a local image that already holds BUILD_PACKAGES
# (an mmdebstrap root filesystem), so the stage installs nothing and needs no network.
ARG BUILD_IMAGE=${DEBIAN_IMAGE}
# The rootfs stage's image. hack/image.sh passes a local image that already holds /rootfs (made
# by the same script on the host), so the stage has nothing to do. A stage name in a variable
# (FROM ${X} with X=stage) would be simpler, but buildah and podman do not resolve it.
ARG ROOTFS_IMAGE=${DEBIAN_IMAGE}

FROM ${ROOTFS_IMAGE} AS rootfs
COPY hack/image-rootfs.sh /usr/local/bin/image-rootfs.sh
RUN if [ ! -f /rootfs/etc/passwd ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap ca-certificates \
      && rm -rf /var/lib/apt/lists/* \
      && image-rootfs.sh /rootfs; \
    fi

FROM ${BUILD_IMAGE} AS build
# What the build needs; hack/image.sh reads this line to make the offline build image.
ARG BUILD_PACKAGES="gcc libc6-dev make cmake pkg-config ca-certificates dpkg-dev patch libcurl4-openssl-dev libnghttp2-dev libyaml-dev libjansson-dev libssl-dev libwebsockets-dev libpq-dev"
RUN missing=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' $BUILD_PACKAGES 2>&1 | grep -v '^installed ' || true); \
    if [ -n "$missing" ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $BUILD_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# The static, minimal libcurl and libpq (docs/development.md, hack/build-minlibs.sh). hack/image.sh
# stages in build/minlibs-src the Debian source packages of the versions this machine builds and
# tests with (and their names in `versions`): built offline from those. Without them (a plain
# `docker build`) the script downloads the sources of the stage's libcurl4-openssl-dev and
# libpq-dev versions. (build/minlibs-sr[c]: a pattern, so that the COPY does not fail when that
# directory is not there.) The libraries are built in a cache mount, kept between builds (the
# script's stamp: built once per version and script; hack/image.sh prunes intermediate layers),
# which the cmake step mounts too.
COPY hack/build-minlibs.sh build/minlibs-sr[c] /minlibs/
RUN --mount=type=cache,id=tenancy-operator-minlibs,target=/cache,sharing=locked \
    if [ -f /minlibs/versions ]; then \
      export TENANCY_MINLIBS_SRC=/minlibs TENANCY_MINLIBS_VERSIONS="$(cat /minlibs/versions)"; \
    fi \
 && TENANCY_CACHE=/cache /minlibs/build-minlibs.sh >/minlibs-prefix
COPY CMakeLists.txt ./
COPY operator/ operator/
COPY cmake/ cmake/
COPY console/ console/
# The programs only (no tests, no benchmarks), warnings as errors as in CI, symbols stripped.
RUN --mount=type=cache,id=tenancy-operator-minlibs,target=/cache,sharing=locked \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTN_TESTS=OFF -DTN_WERROR=ON -DTN_BIN_DIR=/out \
      -DTN_MINLIBS_PREFIX="$(cat /minlibs-prefix)" >/dev/null \
 && cmake --build /build -j "$(nproc)" --target tenancy-operator tenantctl \
 && strip /out/tenancy-operator /out/tenantctl

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tenancy-operator" \
      org.opencontainers.image.description="Kubernetes operator for multi-tenancy (Tenant, Plan, Region, TenancyPolicy)" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/tenancy-operator /out/tenantctl /usr/local/bin/
ENV PATH=/usr/local/bin
# Numeric, so that runAsNonRoot can check it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tenancy-operator"]
