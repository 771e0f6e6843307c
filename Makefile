# The README's two set-up commands are `make demo` and `make test`; CI runs `make test`.
PYTHON ?= python3
export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test deps peers check bench bench-quick interop

demo:
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m protocol demo

# Everything the test suite needs, then the suite (which also runs ruff, mypy, import-linter).
test: deps peers check

deps:
	$(PYTHON) -m pip install -q -e '.[test]'

peers:
	bash interop/setup_peers.sh </dev/null

check:
	$(PYTHON) -m pytest </dev/null

bench:
	$(PYTHON) -m bench

bench-quick:
	$(PYTHON) -m bench --quick

interop:
	$(PYTHON) -m interop $(INTEROP_ARGS) </dev/null

probe:
	$(PYTHON) -m interop probe $(TARGET) $(PROBE_ARGS) </dev/null
