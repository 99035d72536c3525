# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MATURIN := $(VENV)/bin/maturin
STAMP := $(VENV)/.deps-installed

.PHONY: run test build lint test-rust test-python system-deps bench bench-micro clean
.PHONY: bench-peers bench-smoke

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Dependencies are installed again only when the project's manifests change.
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip "maturin>=1.9,<2"
	$(MATURIN) develop --release --extras dev
	touch $(STAMP)

# Rebuild the extension in place (cargo makes this a no-op when nothing changed).
build: $(STAMP)
	$(MATURIN) develop --release --skip-install --quiet 2>/dev/null || $(MATURIN) develop --release

run: build
	$(VENV)/bin/sidegate serve

lint: build
	$(VENV)/bin/ruff check proxy tests bench
	$(VENV)/bin/ruff format --check proxy tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --explicit-package-bases bench/harness
	$(PY) -m mypy.stubtest sidegate._native --allowlist .stubtest-allowlist
	cargo clippy --quiet --all-targets -- -D warnings
	cargo clippy --quiet --features python -- -D warnings
	$(PY) scripts/check_sizes.py

test-rust:
	cargo test --quiet

test-python: build
	$(VENV)/bin/pytest -q

system-deps:
	@scripts/install-system-deps.sh

test: system-deps build lint test-rust test-python

# Load benchmark (bench/RESULTS.md): Sidegate beside direct, nginx, the aiohttp floor and peers.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS="--soak-minutes 2 --rounds 5".
bench: system-deps build
	$(PY) -m bench.harness --publish $(BENCH_ARGS)

bench-peers: build
	bench/install_peers.sh
	$(MAKE) bench

bench-smoke: system-deps build
	$(PY) -m bench.harness --smoke $(BENCH_ARGS)

bench-micro: build
	$(VENV)/bin/pytest -q bench/micro --benchmark-only

clean:
	rm -rf $(VENV) target proxy/sidegate/_native*.so
