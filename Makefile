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

.PHONY: setup demo test lint typecheck pytest debian-tools mlserver-env image clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/canaryflow demo $(DEMO_ARGS)

# Servers the tests run for real, from Debian's packages (command:package): Prometheus; HAProxy, the
# local mesh in front of a third-party server's versions; nginx, the configmap mode's proxy for
# one-version servers; Chromium and its driver, the console's browser test; PostgreSQL, the state
# controller replicas share (Debian keeps its binaries in /usr/lib/postgresql/<major>/bin, looked for there
# too). Installed when missing and we are root; otherwise the tests needing one are
# skipped with the command that installs it (in CI, CI=true, they fail instead).
DEBIAN_TOOLS := prometheus:prometheus haproxy:haproxy nginx:nginx-light chromium:chromium chromedriver:chromium-driver initdb:postgresql

debian-tools:
	@updated=; for pair in $(DEBIAN_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  if command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -x /usr/bin/$$cmd ] \
	     || compgen -G "/usr/lib/postgresql/*/bin/$$cmd" >/dev/null; then \
	    echo "$$cmd: installed"; \
	  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "$$cmd: installing the Debian package $$pkg"; \
	    [ -n "$$updated" ] || { apt-get update -qq && updated=1; }; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null || exit 1; \
	  else \
	    echo "$$cmd: not installed and not root; tests needing it are skipped (apt-get install -y $$pkg)"; \
	  fi; done

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
pytest: setup debian-tools mlserver-env
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
