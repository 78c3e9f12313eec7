# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench build sanitize clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Dev/test dependencies (torch pinned to the local CPU build) and an editable build of the package.
$(STAMP): $(BIN)/python requirements-dev.txt pyproject.toml CMakeLists.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-build-isolation -e .
	touch $(STAMP)

build: $(STAMP)

demo: $(STAMP)
	$(BIN)/fastfeed demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The core's C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize:
	cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFASTFEED_BUILD_TESTS=ON -DFASTFEED_SANITIZE=ON
	cmake --build build/sanitize --target core_tests
	./build/sanitize/core_tests

clean:
	rm -rf build $(VENV)
