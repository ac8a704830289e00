# Two commands on a fresh machine with python3 and make: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
OUTDIR ?= out/example

.PHONY: run test lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(PY)
	$(PIP) install -e ".[cli,plot]"
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(PY)
	$(PIP) install -e ".[cli,plot,test]"
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(PY) -m matgrad_jax run --out $(OUTDIR)
	$(PY) -m matgrad_jax example --out $(OUTDIR)/example.npz --force
	$(PY) -m matgrad_jax fit $(OUTDIR)/example.npz --out $(OUTDIR)/fit --method alternating --force

test: $(VENV)/.test-deps
	$(PY) -m ruff check matgrad_jax tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.test-deps
	$(PY) -m ruff check matgrad_jax tests benchmarks

bench: $(VENV)/.run-deps
	$(PY) -m matgrad_jax bench all
	$(PY) -m matgrad_jax bench plots
	$(PY) -m matgrad_jax bench report README.md

clean:
	rm -rf $(VENV) out build *.egg-info
