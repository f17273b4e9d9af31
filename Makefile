# Every target bootstraps .venv itself, so a fresh clone only needs python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint protos clean conformance

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# what the host suites' own tests import beyond the dev extra (trio, trustme, ...)
CONFORMANCE_STAMP := $(VENV)/.conformance-installed

$(CONFORMANCE_STAMP): $(STAMP) conformance/requirements.txt
	$(BIN)/python -m pip install --quiet -r conformance/requirements.txt
	touch $(CONFORMANCE_STAMP)

demo: $(STAMP)
	$(BIN)/seawall demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in core grpc httpx sqlalchemy metrics adaptive hedge; do \
		if [ -f bench/$$b.py ]; then $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

# the editable install is a plain path to src/ (see pyproject.toml), which mypy follows
lint: $(STAMP)
	$(BIN)/ruff check sdk interceptors storage tests bench examples
	$(BIN)/mypy --strict -p seawall
	$(BIN)/python sdk/_unasync.py --check

protos: $(STAMP)
	$(BIN)/python -m seawall._protos

clean:
	rm -rf $(VENV) build *.egg-info

# SQLAlchemy's and httpx's own test suites, with seawall mounted on every engine and
# client, against the same suites plain (conformance/README.md)
conformance: $(CONFORMANCE_STAMP)
	$(BIN)/python conformance/run.py
