# `make demo` and `make test` do all set-up themselves: they create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak suite-cpu clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/cartpole.py

lint: $(STAMP)
	$(PY) -m ruff check rllib_saliency tests examples benchmarks

# One pytest process per framework: a process cannot build both graph-mode ("tf")
# and eager ("tf2") RLlib algorithms. "tf"/"tf2" run the old-API-stack tests in
# tests/, "torch" the new-API-stack tests in tests/new_stack/ (tests/conftest.py picks).
# The three run side by side (each waits on Ray start-ups, subprocesses and servers much
# of the time); each one's output is printed whole when it ends. TEST_JOBS=1: one by one.
TEST_JOBS ?= 3
FRAMEWORK_TESTS := test-tf test-tf2 test-torch
.PHONY: $(FRAMEWORK_TESTS)

test: lint
	$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target $(FRAMEWORK_TESTS)

$(FRAMEWORK_TESTS): $(STAMP)
	RLLIB_SALIENCY_TEST_FRAMEWORK=$(@:test-%=%) $(PY) -m pytest tests -q --durations=10

bench: $(STAMP)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/engine_torch.py --sizes 64 256
	$(PY) benchmarks/engine_torch.py --sizes 64 256 --threads 1 --clock process --name engine_torch_cpu_process
	$(PY) benchmarks/callback_overhead.py
	$(PY) benchmarks/callback_overhead.py --short
	$(PY) benchmarks/callback_overhead.py --framework torch
	$(PY) benchmarks/callback_overhead.py --env image
	$(PY) benchmarks/movie.py

# ~20 minutes: 1,000 computations per TF mode and on the new stack, and 100 training iterations.
soak: $(STAMP)
	$(PY) benchmarks/soak.py

# make test under benchmarks/suite_cpu.py: its wall time and where its CPU goes, by kind.
suite-cpu:
	$(PYTHON) benchmarks/suite_cpu.py --name suite_cpu -- $(MAKE) --no-print-directory test

clean:
	rm -rf $(VENV) build *.egg-info benchmarks/results
