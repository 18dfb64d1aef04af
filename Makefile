# rok: `make run` serves on 127.0.0.1:8000, `make test` runs the suite, `make lint` the
# linters; CI (.ci/run) runs `make lint` and then `make test`, as `make check` does.
# Every target installs the virtualenv first if pyproject.toml changed since it was built.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip install -e is slow; redo it only when the dependencies (pyproject.toml) change
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The service on SQLite plus the demo (a worker pool, the reference domains, example runs),
# with no key on 127.0.0.1 (ROK_AUTH=off is refused on any other address).
RUN_CMD ?= ROK_AUTH=off $(BIN)/rok serve --migrate --demo --host $(HOST) --port $(PORT)
PYTEST_ARGS ?=

.PHONY: venv run test lint lint-openapi openapi-tools format check openapi bench wheel clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: venv
	$(RUN_CMD)

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

# ruff, the formatter, mypy (service and tests), the import layers (pyproject.toml), and
# the OpenAPI linters on the committed contract
lint: venv lint-openapi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Spectral (the spectral:oas ruleset) and Redocly (recommended) must find 0 errors in
# openapi/openapi.json; warnings are printed, not fatal. Both are npm packages pinned in
# openapi/package-lock.json, installed by `npm ci` when missing or when the lock changed.
OPENAPI_TOOLS := openapi/node_modules/.installed
lint-openapi: $(OPENAPI_TOOLS)
	openapi/node_modules/.bin/spectral lint --fail-severity error \
		--ruleset openapi/.spectral.yaml openapi/openapi.json
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		openapi/node_modules/.bin/redocly lint --config openapi/redocly.yaml openapi/openapi.json

openapi-tools: $(OPENAPI_TOOLS)

$(OPENAPI_TOOLS): openapi/package.json openapi/package-lock.json
	cd openapi && npm ci --no-audit --no-fund
	touch $@

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# lint first, then the tests: the recipe runs after its prerequisite, even with make -j
check: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

# the benchmarks of issue 4 against a real service process; BENCH_ARGS=--quick for a smoke run
BENCH_ARGS ?=
bench: venv
	$(BIN)/rok bench --out bench-out $(BENCH_ARGS)

# the committed OpenAPI contract; CI diffs it against the app
openapi: venv
	$(BIN)/python -m service.api.openapi_export openapi/openapi.json

# rok's wheel in dist/, migrations inside: `pip install dist/rok-*.whl` works from anywhere
wheel: venv
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# build and cache leftovers only: .venv (make venv rebuilds it) and rok.db (your runs) stay
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
