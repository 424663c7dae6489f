# fleetpulse developer targets. `make help` lists them.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv run test test-fast lint fmt bench-ingest bench-ingest-influx bench-engine bench-lp bench-rechunk bench-remote protos bench-agent bench-load bench-faults bench-page fuzz diagram compose-check vendor screenshots clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-agent.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv with every pinned dependency

run: $(STAMP) ## start the API on the embedded SQLite store (and an agent for this machine)
	PATH="$(abspath $(BIN)):$$PATH" PORT=$(PORT) bash scripts/run-local.sh

test: $(STAMP) ## run the whole suite (lint, imports, unit, API, real influxd, end-to-end)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not e2e"

lint: $(STAMP) ## ruff check, format check and the import contracts (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: $(STAMP) ## apply ruff's fixes and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-ingest: $(STAMP) ## ingest throughput through gunicorn on SQLite
	$(BIN)/python bench/ingest.py --store sqlite

bench-ingest-influx: $(STAMP) ## ingest throughput through gunicorn on a real influxd, against direct raw writes
	$(BIN)/python bench/ingest.py --store influxdb

bench-engine: $(STAMP) ## the numpy engine against pandas formulations of the same windows
	$(BIN)/python bench/engine.py

bench-lp: $(STAMP) ## line protocol (Telegraf-shaped, gzip) vs the JSON path through gunicorn, on SQLite and on a real influxd
	$(BIN)/python bench/line_protocol.py --store sqlite
	$(BIN)/python bench/line_protocol.py --store influxdb

bench-rechunk: $(STAMP) ## write cost: steady state vs store's carry vs re-chunked resends (SQLite, in process)
	$(BIN)/python bench/rechunk.py

bench-remote: $(STAMP) ## remote write and OTLP ingest through gunicorn on SQLite, against the JSON path
	$(BIN)/python bench/remote_write.py

protos: $(STAMP) ## regenerate app/ingest/prompb/*_pb2.py from the .proto files (grpcio-tools' protoc)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. app/ingest/prompb/types.proto app/ingest/prompb/remote.proto

bench-agent: $(STAMP) ## agent RSS, CPU and collection latency
	$(BIN)/python bench/agent.py

bench-load: $(STAMP) ## 500 simulated agents x 40 series for 10 min on SQLite and on InfluxDB, zero-loss check
	$(BIN)/python bench/load.py --store sqlite
	$(BIN)/python bench/load.py --store influxdb

bench-faults: $(STAMP) ## under load: worker SIGKILL, influxd and PostgreSQL SIGKILL + restart, 5-min agent outage + SIGKILL
	$(BIN)/python bench/load.py --fault worker-kill --duration 180 --fault-at 61 --warmup 30
	$(BIN)/python bench/load.py --store influxdb --fault influx-restart --outage 60 --duration 300 --fault-at 100 --warmup 30
	$(BIN)/python bench/load.py --store influxdb --fault postgres-restart --outage 30 --duration 180 --fault-at 60 --warmup 30
	$(BIN)/python bench/load.py --fault agent-outage --outage 300

fuzz: $(STAMP) ## schemathesis fuzz from the OpenAPI against a real gunicorn
	$(BIN)/python bench/fuzz.py --examples 1000

bench-page: $(STAMP) ## server time of the web page's host reads (40 series, 24 h and 7 d) on SQLite and a real influxd
	$(BIN)/python bench/page_reads.py --store sqlite
	$(BIN)/python bench/page_reads.py --store influxdb

# The page's chart library, vendored from its npm package at a pinned version (nothing is fetched
# by the browser from elsewhere, and nothing is built on the user's machine).
UPLOT_VERSION ?= 1.6.32
VENDOR        := app/web/static/vendor

vendor: ## refresh the vendored uPlot (npm pack uplot@$(UPLOT_VERSION)) in app/web/static/vendor/
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz) && \
	cp "$$tmp/package/dist/uPlot.iife.min.js" "$$tmp/package/dist/uPlot.min.css" $(VENDOR)/ && \
	cp "$$tmp/package/LICENSE" $(VENDOR)/uPlot.LICENSE && \
	{ echo "uplot $(UPLOT_VERSION) from its npm package (make vendor); sha256 of the files:"; \
	  cd $(VENDOR) && sha256sum uPlot.iife.min.js uPlot.min.css uPlot.LICENSE; } > $(VENDOR)/VERSION.txt
	@cat $(VENDOR)/VERSION.txt

screenshots: $(STAMP) ## docs/page-*.png: the web page in headless Chromium over a demo fleet
	$(BIN)/python scripts/screenshots.py

.PHONY: wheel wheelhouse
wheel: $(STAMP) ## dist/fleetpulse-VERSION-py3-none-any.whl: the agent (`[server]` adds the API)
	$(BIN)/pip wheel -q --no-deps -w dist .

wheelhouse: $(STAMP) ## var/wheelhouse: that wheel and the agent's dependencies, for offline installs
	$(BIN)/pip wheel -q -w var/wheelhouse . -r requirements-agent.txt

diagram: ## regenerate architecture_diagram.png from architecture_diagram.dot
	dot -Tpng -Gdpi=110 architecture_diagram.dot -o architecture_diagram.png

# The v2 plugin (`docker compose`) where installed, else the standalone `docker-compose`: both
# read these files the same way.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

compose-check: ## validate the compose stacks offline, with sample.env's values (no .env needed)
	$(COMPOSE) --env-file sample.env -f docker-compose.yml config -q
	$(COMPOSE) --env-file sample.env -f docker-compose.yml -f docker-compose.influxdb1.yml config -q
	$(COMPOSE) --env-file sample.env -f docker-compose.ha.yml config -q

clean: ## remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
