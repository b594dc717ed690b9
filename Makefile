# Makefile - the targets operator users type without thinking; a thin wrapper over CMake and hack/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BUILD_DIR    ?= build/release
TEST_DIR     ?= build/sanitize
STATE_DIR    ?= $(CURDIR)/.local
JOBS         ?= $(shell nproc)
CMAKE_FLAGS  ?=
ifeq ($(CI),true)
CMAKE_FLAGS  += -DTN_WERROR=ON
endif
ENV_FILE     := $(STATE_DIR)/cluster.env
WITH_CLUSTER  = [ -f $(ENV_FILE) ] || { echo "no local cluster: run 'make cluster-up' first" >&2; exit 1; }; . $(ENV_FILE) &&

##@ General
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: deps build build-test test unit integration e2e fuzz bench lint fmt clean
deps: ## Install the Debian packages the project needs (idempotent)
	@hack/install-deps.sh

# Both builds link the static, minimal libcurl and libpq of hack/build-minlibs.sh (built once per
# Debian version into the cache; docs/development.md, "Static libcurl and libpq").
build: deps ## Build build/bin/tenancy-operator and build/bin/tenantctl (release)
	@minlibs=$$(hack/build-minlibs.sh) && cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTN_BIN_DIR=$(CURDIR)/build/bin -DTN_TESTS=OFF -DTN_MINLIBS_PREFIX="$$minlibs" $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS) -- --no-print-directory

build-test: deps ## Build the test suites under AddressSanitizer and UBSan
	@minlibs=$$(hack/build-minlibs.sh) && cmake -S . -B $(TEST_DIR) -DCMAKE_BUILD_TYPE=Debug -DTN_SANITIZE=ON \
	  -DTN_BIN_DIR=$(CURDIR)/$(TEST_DIR)/bin -DTN_MINLIBS_PREFIX="$$minlibs" $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(TEST_DIR) -j $(JOBS) -- --no-print-directory

test: ## Everything: deps, control plane, build, bring the stack up, run every suite, tear it down
	@hack/test.sh

unit: build-test ## Run the unit suites only (no cluster needed)
	@hack/test.sh --unit-only

integration: build-test ## Run the integration suites against the running local cluster
	@$(WITH_CLUSTER) hack/test.sh --integration-only --reuse-cluster

e2e: ## Run the end-to-end suite: image, a stack with a node, the chart, failover, NetworkPolicies
	@hack/test.sh --e2e-only

fuzz: ## Build the libFuzzer harnesses (clang) in build/fuzz and run each briefly (FUZZ_SECONDS=5)
	@hack/fuzz.sh smoke $(or $(FUZZ_SECONDS),5)

bench: build ## Run the benchmarks and print their figures
	@hack/bench.sh

lint: ## clang-format check and compiler warnings as errors
	@hack/lint.sh

fmt: ## Format the C sources with clang-format
	@find operator tests -name '*.[ch]' -print0 | xargs -0 clang-format -i

clean: ## Remove build outputs
	@rm -rf build

##@ Local cluster
.PHONY: cluster-up cluster-down run
IN_CLUSTER   ?= 0
NODE         ?= $(IN_CLUSTER)
cluster-up: ## Start etcd, kube-apiserver, kube-controller-manager and PostgreSQL on loopback (NODE=1: and a real node)
	@TENANCY_STATE_DIR=$(STATE_DIR) TENANCY_NODE=$(NODE) hack/cluster-up.sh

cluster-down: ## Stop everything cluster-up started (and restore the host after a node)
	@TENANCY_STATE_DIR=$(STATE_DIR) hack/cluster-down.sh

run: build cluster-up ## Build, bring the local stack up and print how to use it (IN_CLUSTER=1: the operator as Pods on a node)
	@TENANCY_STATE_DIR=$(STATE_DIR) TENANCY_IN_CLUSTER=$(IN_CLUSTER) hack/run.sh

##@ Image
.PHONY: image image-archive
image: ## Build the operator image from the Dockerfile, offline (bases from mmdebstrap, buildah)
	@hack/image.sh build

image-archive: ## Build the image and write an OCI archive to build/image/ (IMAGE_ARCHIVE=file)
	@hack/image.sh archive $(IMAGE_ARCHIVE)

##@ Deployment
.PHONY: install uninstall deploy undeploy
install: ## Install the CRDs from crds/ into the cluster of .local/cluster.env
	@$(WITH_CLUSTER) hack/crds.sh apply

uninstall: ## Remove the CRDs from that cluster
	@$(WITH_CLUSTER) hack/crds.sh delete

deploy: install ## Install CRDs, RBAC and the operator Deployment from manifests/
	@$(WITH_CLUSTER) kubectl apply -f manifests/deploy/

undeploy: ## Remove what deploy installed
	@$(WITH_CLUSTER) kubectl delete --ignore-not-found -f manifests/deploy/
