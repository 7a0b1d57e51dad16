# Two entry points: `make serve` and `make test`. Both create .venv and install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

IMAGE ?= tailguard:0.1.0
# The first container engine found; none on this machine (and no registry to pull the base).
ENGINE ?= $(firstword $(foreach e,buildah podman docker,$(if $(shell command -v $(e) 2>/dev/null),$(e))))
# torch is the CPU build: from this machine's wheel folder where there is one, else PyTorch's index.
TORCH_SOURCE ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header

.PHONY: install serve test lint typecheck unit clean lock image lint-docker

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

lint: $(STAMP) lint-docker
	$(BIN)/ruff check src tests benchmarks examples

lint-docker: $(STAMP)
	$(BIN)/hadolint Dockerfile

# Hash-locked runtime dependencies, from pyproject.toml (the Dockerfile installs only these).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(TORCH_SOURCE) \
		--override requirements/overrides.txt -o requirements/runtime.lock
	$(BIN)/uv pip compile requirements/build.in $(LOCK_FLAGS) -o requirements/build.lock

image:
	@test -n "$(ENGINE)" || { echo "no container engine found (buildah, podman or docker): install one to build $(IMAGE)"; exit 1; }
	$(if $(filter buildah,$(ENGINE)),buildah bud,$(ENGINE) build) -t $(IMAGE) .

typecheck: $(STAMP)
	$(BIN)/mypy src

# promtool, prometheus and alertmanager for the SLO tests: Debian's packages, unpacked.
PROM_BIN := .tools/prometheus/usr/bin
$(PROM_BIN)/promtool $(PROM_BIN)/alertmanager-local:
	scripts/install-prometheus.sh

test: lint typecheck $(PROM_BIN)/promtool $(PROM_BIN)/alertmanager-local
	test -x /usr/bin/chromium || scripts/install-chromium.sh
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .tailguard .pytest_cache .mypy_cache .ruff_cache
