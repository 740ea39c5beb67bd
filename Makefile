# qatflow: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
# uv from PATH if present, otherwise a private copy bootstrapped with pip.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/uv/bin/uv)
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
RUN_ROOT ?= runs/demo
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help install run test test-all lint bench clean image-cpu image-gpu image-tpu

help: ## show this help
	@echo "qatflow: EfficientDet-Lite + QAT -> int8 TFLite, as a TFX pipeline"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/uv/bin/uv:
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv==$(UV_VERSION)

# The venv is rebuilt when the lock or the project metadata is newer than it.
$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups --python 3.11
	@touch $@

# Browser tests (dashboard) drive Debian's chromium; installed here, not by hand.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

install: $(STAMP) ## create .venv from uv.lock (bootstraps uv if absent; no-op when up to date)

DEMO_IMAGES ?= 100
run: $(STAMP) ## install if needed, make the synthetic demo data, run the whole pipeline
	@[ -f $(RUN_ROOT)/data/annotations.json ] || \
	  $(VENV)/bin/qatflow demo-data --output $(RUN_ROOT)/data --images $(DEMO_IMAGES) --seed 0
	$(VENV)/bin/qatflow run --config configs/demo.yaml --set runner.pipeline_root=$(RUN_ROOT) \
	  --set data.input=$(RUN_ROOT)/data/images --set data.annotations=$(RUN_ROOT)/data/annotations.json

test: $(STAMP) $(CHROMIUM) ## install if needed, then run the fast test suite
	$(PY) -m pytest

test-all: $(STAMP) $(CHROMIUM) ## install if needed, then run every test, slow and end-to-end included
	$(PY) -m pytest -m ""

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP) ## run the benchmarks in bench/ (tables on stdout, JSON in bench/results/)
	@ls bench/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

IMAGE_TOOL ?= podman
IMAGE_TAG ?= $(shell $(PYTHON) -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
BASE_IMAGE ?= python:3.11-slim-bookworm
image-cpu: ## build the CPU component image (qatflow-cpu:<version>) with podman
	$(IMAGE_TOOL) build -f containers/Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t qatflow-cpu:$(IMAGE_TAG) .
image-gpu: ## build the GPU trainer image (tensorflow[and-cuda]) with podman
	$(IMAGE_TOOL) build -f containers/Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg EXTRAS=gpu -t qatflow-gpu:$(IMAGE_TAG) .
image-tpu: ## build the TPU image with podman (see README for its limits)
	$(IMAGE_TOOL) build -f containers/Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t qatflow-tpu:$(IMAGE_TAG) .

clean: ## remove the venv, caches and run outputs
	rm -rf $(VENV) .tools runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
