# Set-up is two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-fast install system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[lite12,test]'
	touch $@

# Debian packages: Fashion-MNIST gives the demo and the tests real data offline; Chromium
# drives the web page's browser test (Playwright uses it; never `playwright install`).
DEBS := $(if $(wildcard $(FMNIST)/train-images-idx3-ubyte.gz),,dataset-fashion-mnist) \
        $(if $(wildcard /usr/bin/chromium),,chromium)
system-deps:
	@if [ -n "$(strip $(DEBS))" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS)) >/dev/null; \
	  else \
	    echo "note: not root: install $(DEBS) (Debian) yourself; tests that need them are skipped"; \
	  fi; \
	fi

demo: $(STAMP) system-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

clean:
	rm -rf $(VENV) build src/*.egg-info
