# Two set-up commands: `make demo` and `make test`. Everything they need installs from here.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DONORBOT_CONFIG ?= donorbot.toml

.PHONY: demo test install lint typecheck unit bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/donorbot demo config
	$(BIN)/donorbot db upgrade
	$(BIN)/donorbot demo load
	$(BIN)/donorbot serve --fake-wechat 8081

lint: install
	$(BIN)/ruff check bot handlers models tests bench
	$(BIN)/mypy

unit: install
	bash .ci/install-chromium
	$(BIN)/pytest -q

test: lint unit

bench: install
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/import_donations.py
	$(BIN)/python bench/progress_query.py
	$(BIN)/python bench/quota_handler.py
	$(BIN)/python bench/entitlement_handler.py
	$(BIN)/python bench/intent_accuracy.py
	$(BIN)/python bench/broadcast.py
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
