# Every target bootstraps .venv itself, so a fresh clone only needs python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint protos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seawall demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in core grpc httpx sqlalchemy metrics; do \
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
