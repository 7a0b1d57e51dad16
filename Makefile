# Two entry points: `make serve` and `make test`. Both create .venv and install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint typecheck unit clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# Pin the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev,ray,tts]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/tailguard serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .tailguard .pytest_cache .mypy_cache .ruff_cache
