# Ferry's entry points. `make test` runs every test tier that exists; `make demo` shows Ferry
# working. Slow builds (Kubernetes, etcd) are cached under $(FERRY_CACHE), keyed by version.

SHELL := /bin/bash
export FERRY_CACHE ?= $(HOME)/.cache/ferry
CARGO ?= cargo

.PHONY: all build test lint unit integration crds check-crds demo demo-down

all: build

build:
	$(CARGO) build --locked

## test: every tier: lint, unit (with the CRD drift check), integration against a real API server.
test: lint unit integration

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --lib --bins --test crds

## integration: a real etcd + kube-apiserver (built from the Kubernetes Go modules) on loopback.
integration:
	$(CARGO) build --locked --tests
	e2e/apiserver.sh run -- $(CARGO) test --locked --test integration -- --test-threads=4

## crds: regenerate crds/, manifests/crds.yaml, the chart's CRDs and docs/api.md from the Rust types.
crds:
	$(CARGO) run --locked --quiet -- crds --out-dir crds
	$(CARGO) run --locked --quiet -- crds > manifests/crds.yaml
	$(CARGO) run --locked --quiet -- crds --out-dir charts/ferry/crds
	$(CARGO) run --locked --quiet -- crds --reference > docs/api.md

## demo: bring up the API server, run the controller, apply examples/, show what Ferry reports.
demo:
	e2e/demo.sh

demo-down:
	e2e/demo.sh down

## cluster-up / cluster-down: a real single-node Kubernetes cluster on this machine, for the
## end-to-end tests and the demo (docs/cluster.md). Root only; both idempotent.
.PHONY: cluster-up cluster-down test-e2e
cluster-up:
	e2e/cluster/up.sh

cluster-down:
	e2e/cluster/down.sh

## test-e2e: end-to-end checks on that cluster (brought up if needed), then cluster-down and a
## check that nothing is left. E2E_KEEP=1 keeps the cluster.
test-e2e:
	e2e/cluster/test.sh
