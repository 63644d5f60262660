# DiffusionTalker — `make demo` runs the app on the embedded default model; `make test` runs the test suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := $(shell cat packages.txt 2>/dev/null | grep -v '^\#' | tr '\n' ' ')
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup apt demo test test-fast lint bench default-model report clean

setup: apt $(VENV)/.installed

# System libraries: EGL/OSMesa for offscreen rendering, espeak-ng for the synthetic data, chromium for browser tests.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || { echo "apt-get failed; install these packages yourself:$$missing"; exit 1; }; \
	  else echo "missing system packages; install them with: sudo apt-get install$$missing"; fi; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

demo: setup
	$(BIN)/python app.py

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.bench

default-model: setup
	bash train/build_default.sh

report: setup
	$(BIN)/python -m train.report

clean:
	rm -rf $(VENV) .pytest_cache
