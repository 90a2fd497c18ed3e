# Ferry's entry points. `make test` runs every test tier; `make demo` shows Ferry working on a
# real cluster. Slow builds (Kubernetes, etcd, CoreDNS, Rust) are cached under $(FERRY_CACHE),
# outside the repository: Go binaries keyed by version, the cargo target directory by cargo's
# own fingerprints.

SHELL := /bin/bash
export FERRY_CACHE ?= $(HOME)/.cache/ferry
export CARGO_TARGET_DIR ?= $(FERRY_CACHE)/cargo-target
CARGO ?= cargo

.PHONY: all build test lint shellcheck chart unit integration test-registry registry-tools bench-publish bench-scale test-chaos crds demo demo-down demo-apiserver demo-apiserver-down

all: build

build:
	$(CARGO) build --locked

## test: every tier: lint, the Helm chart, unit (with the CRD drift check), integration against
## a real API server, end to end on a real single-node cluster (needs root).
test: lint chart unit integration test-e2e

## lint: shellcheck over the e2e scripts, then rustfmt and clippy with warnings as errors.
lint: shellcheck
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## shellcheck: every e2e/**/*.sh (new ones too) at severity warning, following `source`
## (.shellcheckrc); Debian's shellcheck is installed when missing (root installs it).
shellcheck:
	@command -v shellcheck > /dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck > /dev/null; }
	find e2e -type f -name '*.sh' -print0 | sort -z | xargs -0 shellcheck -x -S warning

## chart: helm (built from its Go module, cached by version) lints the chart with warnings as
## errors, with default values and with the values that render tenant RoleBindings; then
## tests/chart.rs checks what `helm template` renders against manifests/.
TENANT_VALUES := --set 'tenantNamespaces={team-a,team-b}' --set watchNamespace=team-b
chart:
	helm="$$(e2e/build-helm.sh)/helm" && \
	  "$$helm" lint --strict charts/ferry && \
	  "$$helm" lint --strict charts/ferry $(TENANT_VALUES)
	$(CARGO) test --locked --test chart

unit:
	$(CARGO) test --locked --lib --bins --test crds --test purity

## integration: `ferry build publish` against a real registry; the git adapter, fetch step and
## webhooks against the real git server; the HTTP checks and verification GETs against real
## HTTP servers; then a real etcd + kube-apiserver (built from the Kubernetes Go modules) on
## loopback.
integration: test-registry
	e2e/build-helm.sh > /dev/null
	$(CARGO) build --locked --tests
	$(CARGO) test --locked --test git --test git_client --test webhook --test http_check --test http_check_proxy --test verification
	e2e/apiserver.sh run -- $(CARGO) test --locked --test integration -- --test-threads=4

## test-registry: the publish step against a real registry (Debian's docker-registry) on loopback,
## one per test.
test-registry: registry-tools
	$(CARGO) test --locked --test registry

## registry-tools: the registry and skopeo the publish tests and benchmark run (root installs them).
registry-tools:
	@command -v docker-registry > /dev/null && command -v skopeo > /dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry skopeo > /dev/null; }

## bench-publish: figures, not a test. A 100 MB directory published by ferry (release build) and
## the same content pushed by skopeo, side by side, then an unchanged re-publish.
bench-publish: registry-tools
	$(CARGO) test --locked --release --test registry -- --ignored --nocapture --test-threads=1 bench_

## bench-scale: figures, not a test. 10,000 Applications (FERRY_SCALE_APPS) on a real control
## plane with kwok's fake nodes, Ferry's release build running with leader election: time to
## Healthy, RSS, CPU, API requests by verb (steady and after a restart), change latency.
bench-scale:
	e2e/bench-scale.sh

## test-chaos: the resilience tier's long form (20 faults, FERRY_CHAOS_FAULTS): the promotion
## pipeline on the real cluster through controller kills, webhook storms, an API server restart,
## a frozen registry and git server; then its invariants. `make test` runs 5 (needs root).
test-chaos:
	e2e/chaos.sh

## crds: regenerate crds/, manifests/crds.yaml, the chart's CRDs and docs/api.md from the Rust types.
crds:
	$(CARGO) run --locked --quiet -- crds --out-dir crds
	$(CARGO) run --locked --quiet -- crds > manifests/crds.yaml
	$(CARGO) run --locked --quiet -- crds --out-dir charts/ferry/crds
	$(CARGO) run --locked --quiet -- crds --reference > docs/api.md

## demo: the real single-node cluster, Ferry installed in it, examples/ applied (needs root).
demo:
	e2e/demo.sh

demo-down: cluster-down

## demo-apiserver: the same story on an API server without a node (no root needed).
demo-apiserver:
	e2e/demo-apiserver.sh

demo-apiserver-down:
	e2e/demo-apiserver.sh down

## cluster-up / cluster-down: a real single-node Kubernetes cluster on this machine, for the
## end-to-end tests and the demo (docs/cluster.md). Root only; both idempotent.
.PHONY: cluster-up cluster-down test-e2e
cluster-up:
	e2e/cluster/up.sh

cluster-down:
	e2e/cluster/down.sh

## test-e2e: tier 3. The cluster's own checks (node, probes, Services, DNS, git clone and image
## push from a pod), then Ferry installed into it and checked there, then cluster-down and a
## check that nothing is left. E2E_KEEP=1 keeps the cluster.
test-e2e:
	E2E_KEEP=1 e2e/cluster/test.sh
	e2e/install.sh
	if [ "$${E2E_KEEP:-0}" != 1 ]; then e2e/cluster/down.sh; fi
