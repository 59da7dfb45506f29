# Two entry points: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What CI installs: torch with a matching torchvision (the CPU-only torch 2.13 wheel has none).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
# The transformers release CI tests; pyproject.toml admits every 5.x.
TRANSFORMERS_PIN ?= transformers==5.25.0

.PHONY: demo test install java chromium bench-split clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev,transnet,eval,export,ray,report,s3]' $(TRANSFORMERS_PIN)
	command -v java >/dev/null || $(MAKE) java
	command -v chromium >/dev/null || $(MAKE) chromium
	touch $@

# METEOR (pycocoevalcap, the `eval` extra) runs on Java; Debian's JRE when none is on PATH.
java:
	command -v apt-get >/dev/null || { echo "install a Java runtime (e.g. OpenJDK 17) for METEOR, then rerun make" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless

# The report's browser tests (Playwright, the `report` extra) drive Debian's Chromium when none is on PATH.
chromium:
	command -v apt-get >/dev/null || { echo "install Chromium (the report's browser tests drive it), then rerun make" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(BIN)/.installed

demo: install
	$(BIN)/densevid demo --out demo_out

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_out

bench-split: install
	$(BIN)/python benchmarks/split.py --minutes 10
