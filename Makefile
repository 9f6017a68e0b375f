# One entry point per job. `make demo` and `make test` install everything they need.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
CHECKOV_VENV := .venv-checkov
CONTAINER_VENV := .venv-container
SDK_VENV := .venv-sdk
BIN := $(VENV)/bin
# the Node.js that package.json pins (npm ci puts it in node_modules/.bin) runs the CDK CLI and jsii
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export PREDMAINT_DATA_DIR ?= $(CURDIR)/data

.PHONY: wheel-check setup lambda-deps pipcheck-setup browser-setup checkov-setup container-setup container-lock sdk-setup demo test lint data synth lock lock-sdk bench load-bench clean

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

## The Lambda functions' pinned dependencies (Powertools + tracer), for their runtime (stacks/functions.py
## LAMBDA_PYTHON, x86_64), from the registry; stacks/assets.py ships them in every function's package.
LAMBDA_PYTHON := 3.13
LAMBDA_DEPS := build/lambda-deps
$(LAMBDA_DEPS)/requirements.sha256: lambda/requirements-bundle.txt $(BIN)/.installed
	rm -rf $(LAMBDA_DEPS).tmp && mkdir -p $(LAMBDA_DEPS).tmp
	$(BIN)/pip install -q --target $(LAMBDA_DEPS).tmp/site --platform manylinux2014_x86_64 --implementation cp \
		--python-version $(LAMBDA_PYTHON) --only-binary=:all: --no-compile --no-deps -r lambda/requirements-bundle.txt
	sha256sum lambda/requirements-bundle.txt | cut -d' ' -f1 > $(LAMBDA_DEPS).tmp/requirements.sha256
	rm -rf $(LAMBDA_DEPS) && mv $(LAMBDA_DEPS).tmp $(LAMBDA_DEPS)

lambda-deps: $(LAMBDA_DEPS)/requirements.sha256

setup: $(BIN)/.installed node_modules/.installed $(LAMBDA_DEPS)/requirements.sha256

## checkov (the second IaC scanner in tests/infra/test_checkov.py) pins packages that conflict with the
## project's, so it gets its own venv.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-checkov.txt
	touch $@

checkov-setup: $(CHECKOV_VENV)/.installed

## The SageMaker XGBoost container's Python environment (tests/container, bench/serving.py --container):
## Python 3.12 as in image 3.2-0 (this machine's python3.12, else pyenv's 3.12.x; without either, $(PY) with
## a warning: see docs/container.md), the container's pins, sagemaker-containers without its dependencies,
## and the patch the container's Dockerfile applies to it (collections.Mapping -> collections.abc.Mapping).
CONTAINER_PY ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)
$(CONTAINER_VENV)/.installed: requirements-container.txt requirements-container-nodeps.txt
	@py="$(CONTAINER_PY)"; if [ -z "$$py" ]; then py=$(PY); \
		echo "warning: no Python 3.12 here; the container environment uses $$py (the container runs 3.12)" >&2; fi; \
		test -x $(CONTAINER_VENV)/bin/python || "$$py" -m venv $(CONTAINER_VENV)
	$(CONTAINER_VENV)/bin/pip install -q --upgrade "pip<=25.2"
	$(CONTAINER_VENV)/bin/pip install -q -r requirements-container.txt
	$(CONTAINER_VENV)/bin/pip install -q --no-deps -r requirements-container-nodeps.txt
	sed -i 's/collections\.Mapping/collections.abc.Mapping/g' \
		"$$($(CONTAINER_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sagemaker_containers/_mapping.py"
	$(CONTAINER_VENV)/bin/python -c 'import sys; print("container environment: Python", sys.version.split()[0])'
	touch $@

container-setup: $(CONTAINER_VENV)/.installed

## Throwaway venvs with pips a SageMaker image may have, for tests/container/test_offline_install.py (the
## container's offline `pip install .` of our code directories): pip 26.3, pip 25.2, pip 25.2 + wheel, each
## with setuptools, on the container's Python (3.12).
PIPCHECK_VENVS := .venv-pipcheck
$(PIPCHECK_VENVS)/.installed: Makefile
	@py="$(CONTAINER_PY)"; [ -n "$$py" ] || py=$(PY); rm -rf $(PIPCHECK_VENVS); \
	for spec in "pip26:pip==26.3" "pip25:pip==25.2" "pip25-wheel:pip==25.2 wheel==0.45.1"; do \
		name=$${spec%%:*}; "$$py" -m venv $(PIPCHECK_VENVS)/$$name || exit 1; \
		$(PIPCHECK_VENVS)/$$name/bin/python -m pip install -q $${spec#*:} setuptools==80.9.0 || exit 1; \
	done
	touch $@

pipcheck-setup: $(PIPCHECK_VENVS)/.installed

## A real headless browser for tests/stream/test_fleet_page.py (the fleet page renders, no console error,
## the ranking is the state's): Debian's chromium (apt, as root on a CI machine; `playwright install`
## is never run, it downloads browsers from the internet) driven by the playwright package (pinned).
PLAYWRIGHT := playwright==1.65.3
$(BIN)/.browser-installed: $(BIN)/.installed Makefile
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } || \
		{ echo "error: /usr/bin/chromium is missing: install Debian's chromium (apt-get install chromium, as root)" >&2; exit 2; }
	$(BIN)/pip install -q $(PLAYWRIGHT)
	touch $@

browser-setup: $(BIN)/.browser-installed

## Re-resolve requirements-container.txt from requirements-container.in (Python 3.12, as above).
container-lock:
	rm -rf /tmp/predmaint-container-lock && "$(or $(CONTAINER_PY),$(PY))" -m venv /tmp/predmaint-container-lock
	/tmp/predmaint-container-lock/bin/pip install -q -r requirements-container.in
	{ sed -n '1,2p' requirements-container.txt; /tmp/predmaint-container-lock/bin/pip freeze; } > requirements-container.tmp
	mv requirements-container.tmp requirements-container.txt

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
test: setup checkov-setup container-setup sdk-setup pipcheck-setup browser-setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadgroup

## The package installs: a wheel of this checkout, installed with its dependencies into a fresh venv,
## runs `predmaint --version`, `--help` and a one-trial FD001 run (tests/test_wheel.py runs it in `make test`).
wheel-check:
	.ci/wheel-check $(PY)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## Download the public datasets from their official sources and verify SHA-256.
data: setup
	$(BIN)/predmaint data

synth: setup
	npx cdk synth --no-notices -q

## bench/scale.py: the pipeline on FD002 replicated x1 and x4 (x16 too with `make bench X16=1`: ~30 min, GB).
bench: setup
	$(BIN)/python bench/accuracy.py | tee bench/results-accuracy.md
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/stream.py --rebuild
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/scale.py --sizes 1,4 $(if $(X16),--x16)
	$(BIN)/python bench/hosts.py --small --algorithm xgboost --hosts 2 --fit_on train+validation,train

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
	rm -rf $(VENV) $(CHECKOV_VENV) $(CONTAINER_VENV) $(SDK_VENV) $(PIPCHECK_VENVS) node_modules cdk.out .pytest_cache build
