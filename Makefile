# canaryflow: two commands for a new user, both installing into .venv/ at the repo root.
#   make demo   set-up + the main job (a promoted and a rolled-back rollout on one machine)
#   make test   set-up + ruff, mypy and the whole test suite (real MLflow, Prometheus, git)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.canaryflow-installed
# The CPU wheel of torch; an unpinned torch would pull several GB of CUDA packages.
TORCH_PIN := torch==2.13.0

.PHONY: setup demo test lint typecheck pytest prometheus chromium image clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/canaryflow demo $(DEMO_ARGS)

# Prometheus comes from Debian's package; installed here when missing and we are root.
prometheus:
	@if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then \
	  echo "prometheus: $$(prometheus --version 2>&1 | head -n1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "prometheus: installing the Debian package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	else \
	  echo "prometheus: not installed and not root; tests needing it are skipped (apt-get install -y prometheus)"; \
	fi

# Headless Chromium and its driver for the console's browser test: Debian's packages, the same way.
chromium:
	@if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }; then \
	  echo "chromium: $$(chromium --version 2>/dev/null | head -n1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium: installing the Debian packages chromium and chromium-driver"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
	  echo "chromium: not installed and not root; the browser test is skipped (apt-get install -y chromium chromium-driver)"; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy .

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
pytest: setup prometheus chromium
	@set +e; $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest

# Container images (images/*.Containerfile) with podman or docker, when one is installed and answering.
IMAGE_TAG ?= 0.1.0
IMAGE_REPO ?= ghcr.io/canaryflow
CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)

image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
	  echo "make image: no container engine found (install podman or docker, or set CONTAINER_ENGINE)" >&2; exit 1; \
	elif ! "$(CONTAINER_ENGINE)" info >/dev/null 2>&1; then \
	  echo "make image: $(CONTAINER_ENGINE) is installed but cannot build here (no daemon or no permission)" >&2; exit 1; \
	fi
	$(CONTAINER_ENGINE) build -f images/controller.Containerfile -t $(IMAGE_REPO)/canaryflow:$(IMAGE_TAG) .
	$(CONTAINER_ENGINE) build -f images/inference.Containerfile -t $(IMAGE_REPO)/canaryflow-inference:$(IMAGE_TAG)-cuda .

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
