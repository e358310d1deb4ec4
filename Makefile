# Two commands a newcomer needs on a fresh machine: `make run` and `make test`.
# Each creates .venv, installs the Python packages and the Debian packages it needs, then runs.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages the tests and the demo use: ffmpeg pushes test streams, rtsp-server-perl
# serves RTSP in the ingestion tests, espeak-ng speaks, chromium (with a font) runs the web
# UI's browser tests through Playwright (never `playwright install`: it downloads browsers).
APT_PACKAGES ?= ffmpeg espeak-ng rtsp-server-perl chromium fonts-dejavu-core
DEMO_DIR ?= .cache/demo

.PHONY: run test eval lint docs clean system-deps venv

DEMO_TASK ?= Tell me whenever something appears or leaves
PORT ?= 8765

# Serve a generated demo clip with a standing task; the model comes from $$JOYVL_MODEL_URL
# when set, else the usual resolution; with no model at all, the oracle stands in (and says so).
run: venv system-deps
	@test -f $(DEMO_DIR)/appear.mp4 || $(VENV)/bin/joyvl synth appear $(DEMO_DIR)/appear.mp4 --seed 1 >/dev/null
	$(VENV)/bin/joyvl --db $(DEMO_DIR)/joyvl.db serve $(DEMO_DIR)/appear.mp4 --loop \
	  --task "$(DEMO_TASK)" --port $(PORT) --oracle-fallback

test: venv system-deps
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .

# The full evaluation suite with the oracle (it measures the system, not a model); score a real
# model with `make eval MODEL_URL=http://127.0.0.1:8000/v1 MODEL=name`.
EVAL_SUITE ?= suite
EVAL_OUT ?= eval-results
eval: venv system-deps
	$(VENV)/bin/joyvl eval $(EVAL_SUITE) --out $(EVAL_OUT) $(if $(MODEL_URL),--model-url $(MODEL_URL)) \
	  $(if $(MODEL),--model $(MODEL)) $(EVAL_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

docs: venv
	$(PY) docs/generate.py

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[test]"
	@touch $@

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	    echo "installing Debian packages:$$missing"; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "please install these system packages:$$missing (no apt-get here)"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache $(DEMO_DIR)
