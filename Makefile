# nemotron-batch: `make demo` runs the job offline on the bundled samples; `make test` runs the test suite.
# Both set up .venv first (once). PYTHON picks the interpreter that creates it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch first, pinned: installed after NeMo, pip would pull the newest CUDA build (several GB) on a CPU machine.
# GPU machines: see README ("Installing on a GPU machine").
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: setup
	$(PY) -m jobs.demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.job_vs_transcribe

clean:
	rm -rf build outputs .pytest_cache
