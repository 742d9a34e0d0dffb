# deepserve: `make serve` and `make test` each work alone on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8001
MODEL_REPOSITORY ?= models

.PHONY: serve test system-tools lint typecheck loadtest bench container-check clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "deepserve needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes. setuptools' notice about editable
# installs (a UserWarning of its build step) is kept off the screen: it reads like a failure.
EDITABLE := PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e
$(VENV)/.installed-server: $(BIN)/python pyproject.toml
	$(EDITABLE) ".[server]"
	touch $@

# Tests train every model family for a few steps, so they need the train extra (torch) too.
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(EDITABLE) ".[server,dev,train,loadtest]"
	touch $@ $(VENV)/.installed-server $(VENV)/.installed-loadtest

serve: $(VENV)/.installed-server
	$(BIN)/deepserve serve --model-repository $(MODEL_REPOSITORY) --port $(PORT)

# Debian's packages some tests drive: Prometheus and promtool (dashboard and alert tests),
# Chromium and its driver (the web page in a real browser), nginx (sequences routed over two
# servers by the shipped proxy config). Where apt-get is not at hand those
# tests are skipped and say how to get them.
SYSTEM_PACKAGES := prometheus chromium chromium-driver nginx-light
system-tools:
	@if ! (command -v promtool && command -v chromium && command -v chromedriver && command -v nginx) >/dev/null \
		&& command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1)) || \
		echo "$(SYSTEM_PACKAGES) could not be installed: their tests will be skipped"; \
	fi

# The whole suite, then every test that starts a server again against a split server
# (--frontends 2: one engine, two front ends; DEEPSERVE_FRONTENDS reaches every server started).
# Folders and modules under tests/ that start no server (in-process tests, training, tools),
# the certificate recipe's test (a doc and a start-up check, the same in every process),
# and the benchmark tool's test: it checks the tool, not the server (tests/split does), and its
# concurrency-1 time split compares medians measured apart, which a split server's two extra
# processes on two cores can turn into noise.
SINGLE_PROCESS_ONLY := training protocol runtime tasks core/test_control.py \
	core/test_dataplane.py core/test_vision.py core/test_auth.py core/test_imaging.py \
	core/test_certificates.py \
	batching/test_scheduler_unit.py batching/test_instance.py observability/test_tracing.py \
	http/test_convert.py sdk/test_package.py sdk/test_task_call.py loadtests/test_gpu_kit.py \
	loadtests/test_bench.py split/test_remote_scheduler.py split/test_engine_ceiling.py \
	models/test_generators.py
test: $(VENV)/.installed-dev system-tools typecheck
	$(BIN)/python -m pytest
	DEEPSERVE_FRONTENDS=2 $(BIN)/python -m pytest -q \
		$(foreach path,$(SINGLE_PROCESS_ONLY),--ignore=tests/$(path))

lint: $(VENV)/.installed-dev typecheck
	$(BIN)/ruff check .

# mypy over the package as it is installed (deepserve is sdk/, deepserve.server is server/,
# deepserve.tuning is tuning/):
# it reads a tree of links laid out that way.
TYPECHECK_TREE := build/typecheck
typecheck: $(VENV)/.installed-dev
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/deepserve
	for entry in sdk/*; do ln -s "$(CURDIR)/$$entry" $(TYPECHECK_TREE)/deepserve/; done
	ln -s "$(CURDIR)/server" $(TYPECHECK_TREE)/deepserve/server
	ln -s "$(CURDIR)/tuning" $(TYPECHECK_TREE)/deepserve/tuning
	cd $(TYPECHECK_TREE) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/$(TYPECHECK_TREE)-cache -p deepserve

$(VENV)/.installed-loadtest: $(BIN)/python pyproject.toml
	$(EDITABLE) ".[server,loadtest]"
	touch $@

# Locust, headless, with checked answers; USERS / DURATION / URL (a running server) optional.
USERS ?= 16
DURATION ?= 60s
loadtest: $(VENV)/.installed-loadtest
	$(BIN)/python -m loadtests.run --users $(USERS) --duration $(DURATION) \
		$(if $(URL),--url $(URL)) --out results/load $(if $(P99_MS),--p99-ms $(P99_MS))

# The closed-loop benchmark against the compute and transport ceilings.
MODEL ?= mnist
bench: $(VENV)/.installed-loadtest
	$(BIN)/python -m loadtests.bench --model $(MODEL) --concurrency 1,8,32,64

# Build and run the CPU image with podman on stand-in base images (slow: not part of make test).
# The image binds every interface, so it needs a token: a throwaway one for this local check.
container-check:
	bash ../shared/tools/container_check.sh check docker/Dockerfile.cpu . \
		--port 8001 --health --wait 180 \
		-e DEEPSERVE_INFERENCE_TOKEN=container-check-$$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
