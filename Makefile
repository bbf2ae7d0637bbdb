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

.PHONY: setup demo test lint typecheck pytest prometheus haproxy mlserver-env image clean

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

# HAProxy (Debian) splits traffic between a third-party server's versions, as a mesh does in a cluster.
haproxy:
	@if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then \
	  echo "haproxy: $$(haproxy -v 2>&1 | head -n1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "haproxy: installing the Debian package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	else \
	  echo "haproxy: not installed and not root; tests needing it are skipped (apt-get install -y haproxy)"; \
	fi

# Seldon MLServer in its own environment, as its container image holds it (its fastapi pin differs).
MLSERVER_VENV := .venv-mlserver
MLSERVER_REQS := canaryflow/app/local/mlserver-requirements.txt

mlserver-env: $(MLSERVER_VENV)/.installed

$(MLSERVER_VENV)/.installed: $(MLSERVER_REQS)
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/python -m pip install --quiet -r $(MLSERVER_REQS)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy .

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
pytest: setup prometheus haproxy mlserver-env
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
	rm -rf $(VENV) $(MLSERVER_VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
