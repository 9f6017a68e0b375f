# One entry point per job. `make demo` and `make test` install everything they need.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
CHECKOV_VENV := .venv-checkov
SDK_VENV := .venv-sdk
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PREDMAINT_DATA_DIR ?= $(CURDIR)/data

.PHONY: setup checkov-setup sdk-setup demo test lint data synth lock lock-sdk bench load-bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)" >&2; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(BIN)/.installed node_modules/.installed

## checkov (the second IaC scanner in tests/infra/test_checkov.py) pins packages that conflict with the
## project's, so it gets its own venv.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-checkov.txt
	touch $@

checkov-setup: $(CHECKOV_VENV)/.installed

## The SageMaker Python SDK v3 (sagemaker-train, for notebooks/sagemaker.ipynb's AWS branch) cannot join the
## project's venv: sagemaker-train requires mlflow 3, which caps gunicorn (<27) and pyarrow (<26) below the
## project's pins, and graphene (<4) caps graphql-core below the test set's. So it gets its own venv: the
## project's runtime pins with those two moved, plus the SDK parts (requirements-sdk.txt, `make lock-sdk`).
SDK_UNPINNED := gunicorn|pyarrow
$(SDK_VENV)/.installed: requirements-sdk.txt pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)" >&2; exit 2; }
	test -x $(SDK_VENV)/bin/python || $(PY) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q --upgrade pip
	$(SDK_VENV)/bin/pip install -q -r requirements-sdk.txt
	$(SDK_VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

sdk-setup: $(SDK_VENV)/.installed

## The main job: synth, a full local pipeline run on C-MAPSS FD001, serve, invoke, shut down.
demo: setup
	$(BIN)/python -m predmaint.demo

## The whole test suite.
test: setup checkov-setup sdk-setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadgroup

lint: setup
	$(BIN)/ruff check .

## Download the public datasets from their official sources and verify SHA-256.
data: setup
	$(BIN)/predmaint data

synth: setup
	npx cdk synth --no-notices -q

bench: setup
	$(BIN)/python bench/accuracy.py | tee bench/results-accuracy.md

## Bounded loopback load test of the local server (knee, 80% held 60 s, RSS over 100k requests).
load-bench: setup
	$(BIN)/python bench/load.py

## Re-resolve pinned dependencies from requirements*.in.
lock:
	rm -rf /tmp/predmaint-lock && $(PY) -m venv /tmp/predmaint-lock
	/tmp/predmaint-lock/bin/pip install -q -r requirements.in && /tmp/predmaint-lock/bin/pip freeze > requirements.txt

## Re-resolve requirements-sdk.txt: requirements-sdk.in on top of requirements.txt less $(SDK_UNPINNED).
lock-sdk:
	rm -rf /tmp/predmaint-lock-sdk && $(PY) -m venv /tmp/predmaint-lock-sdk
	grep -v -E '^($(SDK_UNPINNED))==' requirements.txt > /tmp/predmaint-lock-sdk/runtime.txt
	/tmp/predmaint-lock-sdk/bin/pip install -q -r requirements-sdk.in -r /tmp/predmaint-lock-sdk/runtime.txt
	{ echo "# Pinned venv of notebooks/sagemaker.ipynb's AWS branch (.venv-sdk): requirements-sdk.in on top of"; \
	  echo "# requirements.txt less $(SDK_UNPINNED) (see the Makefile). Regenerate with make lock-sdk."; \
	  /tmp/predmaint-lock-sdk/bin/pip freeze --all --exclude pip; } > requirements-sdk.txt

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SDK_VENV) node_modules cdk.out .pytest_cache build
