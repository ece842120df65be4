# The README's commands. CI runs `make test` in a fresh clone (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= data/demo
PYTEST_ARGS ?=

.PHONY: demo test lint format pytest bench clean docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo's next steps include `serve`: the base package and the serve extra.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[serve]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

# Synthetic data -> train the seed's CNN for a few epochs -> evaluate -> print where things are
# and the next commands.
demo: $(VENV)/.installed
	$(BIN)/metastasis synth --out $(DEMO_DATA) --n 2000 --n-valid 500
	$(BIN)/metastasis check $(DEMO_DATA) --no-progress
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/metastasis train --config demo --data $(DEMO_DATA)/train \
		--val-data $(DEMO_DATA)/valid --out $$run && \
	$(BIN)/metastasis evaluate --checkpoint $$run --data $(DEMO_DATA)/valid \
		--out $$run/evaluation --no-progress && \
	echo "" && echo "Demo finished. Run folder: $$run" && \
	echo "" && \
	echo "Next steps (the command is $(BIN)/metastasis, or run 'source $(BIN)/activate' first):" && \
	echo "  open the reports:     $$run/report.html and $$run/evaluation/report.html" && \
	echo "  serve the model:      $(BIN)/metastasis serve --checkpoint $$run   (then http://127.0.0.1:8000)" && \
	echo "  explore the data:     $(BIN)/metastasis eda $(DEMO_DATA) --out $$run/eda" && \
	echo "  your own data:        $(BIN)/metastasis train --config fast-cpu --data DATA   ('$(BIN)/metastasis recipes' lists the recipes)"

test: lint pytest

pytest: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks docs/hooks
	$(BIN)/ruff format --check src tests benchmarks docs/hooks
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/, with --strict: any warning fails, and so
# does any broken internal link or anchor of the built pages (docs/hooks/links.py runs after the
# build). The notebooks are executed once here for their figures (never stored with outputs).
docs: $(VENV)/.installed-dev
	METASTASIS_DOCS_EXECUTE=true $(BIN)/mkdocs build --strict --site-dir site

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests benchmarks docs/hooks
	$(BIN)/ruff check --fix src tests benchmarks docs/hooks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info site
