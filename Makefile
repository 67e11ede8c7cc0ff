# Two commands on a fresh machine:  `make repro` (the pipeline)  and  `make test` (the tests).
# Both bootstrap .venv when it is missing or older than pyproject.toml / constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# A CPU build by default; GPU users: `make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export TORCH_HOME ?= $(CURDIR)/.cache/torch
export PYTHONUNBUFFERED := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test test-slow bench gpu-check install clean-venv test-media

# Real recorded speech for the inference test (Debian's codec2-examples, 16 kHz wavs)
TEST_SPEECH := /usr/share/codec2/raw/speech_orig_16k.wav
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo "sudo -n apt-get")

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

install: $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test-media:
	@test -f $(TEST_SPEECH) || $(APT) install -y -qq codec2-examples >/dev/null 2>&1 \
	  || ($(APT) update -qq >/dev/null 2>&1 && $(APT) install -y -qq codec2-examples >/dev/null 2>&1) \
	  || echo "warning: could not install codec2-examples; the real-speech inference test will fail"

test: $(STAMP) test-media
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP) test-media
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/model.py

gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py

clean-venv:
	rm -rf $(VENV)
