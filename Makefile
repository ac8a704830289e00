# Two commands on a fresh machine with python3 and make: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
OUTDIR ?= out/example
# The suite runs in this many worker processes (pytest-xdist; each test file stays in one worker,
# so its module fixtures run once). Most of its time is XLA compiling, one core per compile.
TEST_WORKERS ?= 2

.PHONY: run test lint docs bench clean

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
	$(PY) -m ruff check matgrad_jax tests benchmarks docs/hooks.py
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The site, into site/ (offline; the suite builds it too, strictly). The notebooks are rendered
# executed here (small sizes), and as stored (without outputs) in the suite's build.
docs: $(VENV)/.test-deps
	NO_MKDOCS_2_WARNING=1 MATGRAD_DOCS_EXECUTE=true MATGRAD_QUICK=1 $(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.test-deps
	$(PY) -m ruff check matgrad_jax tests benchmarks docs/hooks.py

bench: $(VENV)/.run-deps
	$(PY) -m matgrad_jax bench all
	$(PY) -m matgrad_jax bench plots
	$(PY) -m matgrad_jax bench report docs/performance/index.md

clean:
	rm -rf $(VENV) out build site .cache *.egg-info
