# scaling-pipeline: `make run` and `make test` do everything on a fresh clone (Python 3.11 + make).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := data/demo
export DAGSTER_HOME := $(CURDIR)/.dagster
export MPLBACKEND := Agg

.PHONY: install demo run test ui bench clean-data

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3.11 (or python3) not found on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,prod]'
	@touch $(STAMP)

install: $(STAMP) .dagster/dagster.yaml

.dagster/dagster.yaml: deploy/dagster.dev.yaml
	@mkdir -p .dagster
	cp deploy/dagster.dev.yaml .dagster/dagster.yaml

# Demo logs are generated only when the log root (data/) holds no logs yet.
demo: install
	@if [ -z "$$(find data -mindepth 1 -not -name .gitkeep -not -name 'warehouse.duckdb*' -print -quit 2>/dev/null)" ]; then \
		echo "data/ holds no logs: generating the demo ladder in $(DEMO)"; \
		$(BIN)/scaling-pipeline demo-data $(DEMO) --seed 0; \
	fi

run: demo
	$(BIN)/scaling-pipeline run

# One worker per core; a test file stays on one worker, so its module fixtures are built once.
test: demo
	$(BIN)/python -m pytest -q -n auto --dist loadfile

ui: demo
	$(BIN)/scaling-pipeline ui --host 127.0.0.1 --port 3000

bench: install
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_ingest.py --rows 1e6,1e7
	$(BIN)/python benchmarks/bench_e2e.py
	$(BIN)/python benchmarks/bench_fit_families.py --families 1000
	$(BIN)/python benchmarks/bench_curves.py
	$(BIN)/python benchmarks/bench_ui.py --repeat 3

clean-data:
	rm -rf $(DEMO) data/warehouse.duckdb data/warehouse.duckdb.wal reports/20* reports/latest
