# Two commands for a newcomer: `make demo` (set up + run on embedded defaults) and `make test`.
VENV ?= .venv
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint readme clean

setup: $(VENV)/.installed

# torch is installed on its own first: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[local,dev]'
	touch $@

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
