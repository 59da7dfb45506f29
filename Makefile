# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What CI installs: torch with a matching torchvision (the CPU-only torch 2.13 wheel has none).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install bench-split clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev,transnet]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/densevid demo --out demo_out

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_out

bench-split: install
	$(BIN)/python benchmarks/split.py --minutes 10
