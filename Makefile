# theoryx developer entry points. `make test` is what CI runs (.ci/run).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv install install-run demo docker test test-fast lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# theoryx and what its tests need (linters, type checker, Playwright, the optional extras).
install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

# theoryx alone (its required dependencies; no test toolchain).
install-run: $(BIN)/python
	$(BIN)/pip install -q -e .

# Install theoryx and run a real processor on the mock adapter (no Docker needed).
demo: install-run
	$(BIN)/theoryx run --adapter mock --ref llm/litellm@1 \
	  --inputs-json '{"messages":[{"role":"user","content":"Hello"}]}'

# Start a Docker engine and build the offline base image (root; idempotent).
docker:
	bash scripts/docker-up.sh
	bash scripts/base-image.sh

lint: install
	$(BIN)/ruff check cas theoryx tests bench
	$(BIN)/mypy

# No Docker and nothing marked slow (each slow test takes more than ~3 s): the edit-test loop.
test-fast: install
	$(BIN)/pytest -q -m "not docker and not slow"

# Everything: lint, types, Docker engine + base image, the whole suite.
test: install docker
	bash scripts/chromium-up.sh
	bash scripts/tools-up.sh
	$(BIN)/ruff check cas theoryx tests bench
	$(BIN)/mypy
	bash scripts/nginx-up.sh
	THEORYX_BASE_IMAGE=$${THEORYX_BASE_IMAGE:-theoryx/python-base:bookworm} $(BIN)/pytest -q

bench: install
	$(BIN)/python bench/bench_hit.py
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis htmlcov .coverage
