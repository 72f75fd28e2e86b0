# amlwh — see README.md. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STREAM := samples/demo-stream.ndjson.gz
AZURITE_VERSION := 3.35.0
AZURITE := .tools/azurite/node_modules/.bin/azurite-blob

.PHONY: install browser report-screenshot demo demo-backfill test test-unit bench stack-up stack-down clean

# Python packages into .venv, Azurite (blob service, for checkpoints) from npm into .tools/.
install: $(STAMP) $(AZURITE)

$(STAMP): pyproject.toml setup.py transforms/_linescan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(AZURITE):
	npm install --no-audit --no-fund --loglevel=error --prefix .tools/azurite azurite@$(AZURITE_VERSION)
	test -x $(AZURITE)

# Headless Chromium and its WebDriver (Debian packages), for the report's browser test
# (tests/consumer/report) and docs/report.png. Installs them only when missing.
# Without recommends (they bring avahi, samba, cups helpers); fonts-liberation draws the text.
BROWSER_PACKAGES := chromium chromium-driver fonts-liberation
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "browser: chromium and chromedriver are installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: no apt-get here; install Chromium and a matching chromedriver (Debian packages: $(BROWSER_PACKAGES)) by hand" >&2; exit 1; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); \
	else \
	  echo "browser: not root and no sudo; as root run: apt-get install $(BROWSER_PACKAGES)" >&2; exit 1; \
	fi

# docs/report.png: the report of the bundled demo stream, in headless Chromium.
report-screenshot: install browser
	$(BIN)/python docs/make_report_screenshot.py

# The local hub and Azurite in the background on free loopback ports; their
# connection strings land in .stack/env (source it, then run amlwh).
stack-up: install
	$(BIN)/python -m devstack up --dir .stack

stack-down:
	$(BIN)/python -m devstack down --dir .stack

# The main job on local defaults: start the local hub + Azurite (.stack-demo/),
# publish the bundled sample stream with the real SDK producer, run the worker
# until it has caught up, print the headline views, stop what it started.
# Rows land in ./warehouse; running it again stores nothing twice.
demo: install
	@$(BIN)/python -m devstack down --dir .stack-demo >/dev/null 2>&1 || true
	$(BIN)/python -m devstack up --dir .stack-demo
	@set -a; . .stack-demo/env; set +a; \
	  $(BIN)/amlwh publish $(DEMO_STREAM) --partition-key subject \
	  && AMLWH_EVENTHUB__LOAD_BALANCING_INTERVAL_S=2 $(BIN)/amlwh run --stop-when-idle 5; rc=$$?; \
	  $(BIN)/python -m devstack down --dir .stack-demo; exit $$rc
	@echo; echo "== run_durations"; $(BIN)/amlwh query "SELECT * FROM run_durations ORDER BY experiment_name, run_type"
	@echo; echo "== failure_rates (latest days)"; $(BIN)/amlwh query "SELECT * FROM failure_rates ORDER BY day DESC, experiment_name LIMIT 15"
	@echo; echo "== dead_letters by reason"; $(BIN)/amlwh query "SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC"

# The same views from files, without the hub: the batch backfill path.
demo-backfill: install
	$(BIN)/amlwh backfill files $(DEMO_STREAM)
	@echo; $(BIN)/amlwh query "SELECT * FROM run_durations ORDER BY experiment_name, run_type"

# Two pytest processes (TEST_PROCESSES=1 for one): most integration tests wait on worker
# processes, the hub and Azurite, so two halve the wall time on 2 cores. A file's tests stay
# in one process (module fixtures); each process runs its own local hub and Azurite.
TEST_PROCESSES ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile

# Pure code and real files only: no hub, no Azurite, no CLI processes (seconds).
test-unit: install
	$(BIN)/python -m pytest -q -m "not integration"

bench: install
	$(BIN)/python bench/bench_backfill.py
	$(BIN)/python bench/bench_hub.py

clean:
	rm -rf $(VENV) .tools .stack .stack-demo warehouse bench/out .pytest_cache .hypothesis
