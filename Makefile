# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
# `make test` runs `make lint` (ruff, mypy) and `make docs` (the API site), then the test suite,
# then `make test-wheel` (the suite again, against a wheel installed in a venv of its own).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-forecast test test-wheel wheel lint docs bench build sanitize sanitize-python tsan fuzz fuzz-corpus clean

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

# A year-ahead forecast of El Nino sea temperatures (statsmodels' data) against the seasonal-naive forecast.
demo-forecast: $(STAMP)
	$(BIN)/fastfeed demo --forecast

test: $(STAMP)
	$(MAKE) --no-print-directory lint docs
	$(BIN)/python -m pytest -q tests
	$(MAKE) --no-print-directory test-wheel

# Lint and format checks (configured in pyproject.toml), then the package's type check.
LINT_PATHS := python bench tests $(wildcard fuzz/*.py) $(wildcard tools/*.py)
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# The API reference from the docstrings (mkdocs.yml, docs/), into build/site; warnings fail it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The core's C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize:
	cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFASTFEED_BUILD_TESTS=ON -DFASTFEED_SANITIZE=ON -DFASTFEED_CUDA=OFF
	cmake --build build/sanitize --target core_tests
	./build/sanitize/core_tests

# The core's C++ tests under ThreadSanitizer (the pipeline's workers, pools and hand-over).
tsan:
	cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFASTFEED_BUILD_TESTS=ON -DFASTFEED_TSAN=ON -DFASTFEED_CUDA=OFF
	cmake --build build/tsan --target core_tests
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build/tsan/core_tests

# libFuzzer on the .npy header parser (needs clang: apt-get install clang), ASan+UBSan on.
# Runs FUZZ_TIME seconds (default 600) from the seed corpus fuzz/corpus/npy; new inputs go to
# build/fuzz/corpus, a crash to build/fuzz/crash-*. Exactly:
#   make fuzz FUZZ_TIME=600
# Reproduce a crash: ./build/fuzz/npy_header_fuzzer build/fuzz/crash-<hash>
FUZZ_TIME ?= 600
fuzz:
	cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTFEED_BUILD_FUZZERS=ON -DFASTFEED_CUDA=OFF
	cmake --build build/fuzz --target npy_header_fuzzer
	mkdir -p build/fuzz/corpus
	./build/fuzz/npy_header_fuzzer -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-dict=fuzz/npy.dict -artifact_prefix=build/fuzz/ build/fuzz/corpus fuzz/corpus/npy

# Regenerates the seed corpus from np.save output (all dtypes, versions 1-3, orders, shapes).
fuzz-corpus: $(STAMP)
	$(BIN)/python fuzz/make_corpus.py

# The Python test suite against a Debug build of the extension under ASan and UBSan, in a
# venv of its own (.venv's editable install would shadow it). Leak checks are off: CPython's
# own allocations would drown them; the C++ tests (make sanitize) check leaks. A failed allocation
# returns null, as malloc does, so the tests of sizes too large for memory see the error users see.
ASAN_VENV := .venv-asan
sanitize-python:
	test -x $(ASAN_VENV)/bin/python || $(PY) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/pip install -q -r requirements-dev.txt
	cmake -S . -B build/asan-py -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFASTFEED_SANITIZE=ON -DFASTFEED_CUDA=OFF \
	  -DPython_EXECUTABLE=$(CURDIR)/$(ASAN_VENV)/bin/python -Dpybind11_DIR=$$($(ASAN_VENV)/bin/python -m pybind11 --cmakedir)
	cmake --build build/asan-py --target _core _torch_views
	rm -rf build/asan-pkg && mkdir -p build/asan-pkg && cp -r python/fastfeed build/asan-pkg/ && cp build/asan-py/_core*.so build/asan-py/_torch_views*.so build/asan-pkg/fastfeed/
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0,handle_sigbus=0,allow_user_segv_handler=1,allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PYTHONPATH=build/asan-pkg $(ASAN_VENV)/bin/python -m pytest -q -p no:cacheprovider tests \
	  --ignore=tests/test_cli.py --ignore=tests/test_convert.py -k "not torchrun"

clean:
	rm -rf build dist $(VENV) $(ASAN_VENV) .venv-bench

# The peers' benchmark (bench/w4.py: fastfeed vs pytorch-forecasting, GluonTS, NumPy) in a venv of
# its own, .venv-bench, so the peers (requirements-bench.txt) never touch the dev venv. Every pip
# install there takes -c constraints.txt (torch held to the local CPU build); a torchvision pulled
# in for another torch breaks the peers' imports, so it is removed. fastfeed is built into
# build/bench (not the dev venv's build dir) and reinstalled whenever its sources change.
# `make bench-w4 W4_ARGS=--quick` passes options to the script.
.PHONY: bench-setup bench-w4
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_FF_STAMP := $(BENCH_VENV)/.fastfeed
FASTFEED_SOURCES := CMakeLists.txt pyproject.toml $(shell find cmake csrc python/fastfeed -type f \
	-not -path '*/__pycache__/*' -not -name '*.so' 2>/dev/null)
W4_ARGS ?=

# The venv ignores itself (a '*' .gitignore inside, as Python 3.13's venv writes).
$(BENCH_BIN)/python:
	$(PY) -m venv $(BENCH_VENV)
	echo '*' > $(BENCH_VENV)/.gitignore

$(BENCH_STAMP): $(BENCH_BIN)/python requirements-bench.txt constraints.txt
	$(BENCH_BIN)/pip install -q -c constraints.txt torch==2.13.0 numpy \
	  "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.18" ninja
	$(BENCH_BIN)/pip install -q -c constraints.txt -r requirements-bench.txt
	$(BENCH_BIN)/pip uninstall -y -q torchvision 2>/dev/null || true
	$(BENCH_BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(BENCH_STAMP)

$(BENCH_FF_STAMP): $(BENCH_STAMP) $(FASTFEED_SOURCES)
	$(BENCH_BIN)/pip install -q -c constraints.txt --no-build-isolation -C build-dir=build/bench/{wheel_tag} -e .
	touch $(BENCH_FF_STAMP)

bench-setup: $(BENCH_FF_STAMP)

bench-w4: $(BENCH_FF_STAMP)
	$(BENCH_BIN)/python bench/w4.py $(W4_ARGS)

# Benchmark W5 (bench/w5.py: token files against nanoGPT's get_batch, a mixture, a deep resume, a
# Hugging Face dataset against a DataLoader, best-fit packing), and the language-model example
# (examples/train_char_lm.py: a Hugging Face and a Megatron corpus mixed), both in .venv-bench,
# which has datasets and megatron-core. `make bench-w5 W5_ARGS=--quick` passes options.
.PHONY: bench-w5 example-lm
W5_ARGS ?=
bench-w5: $(BENCH_FF_STAMP)
	$(BENCH_BIN)/python bench/w5.py $(W5_ARGS)

example-lm: $(BENCH_FF_STAMP)
	$(BENCH_BIN)/python examples/train_char_lm.py

# ----- wheels ---------------------------------------------------------------------------------
# `make wheel` builds an sdist and, from that sdist, a wheel (python -m build, in an isolated build
# environment, as pip builds for users), then repairs the wheel to a manylinux tag with auditwheel:
# dist/ then holds fastfeed-*.tar.gz and fastfeed-*-manylinux_*.whl. CUDA is chosen, not found:
# WHEEL_CUDA=OFF (the default, what the published wheels hold) or WHEEL_CUDA=ON (needs nvcc;
# cudart is linked statically, so that wheel too imports on machines without a driver or GPU).
# The native torch views are never built into a wheel: they fit one exact torch version only.
# The wheel is rebuilt when the package's sources, README.md or WHEEL_CUDA change.
WHEEL_CUDA ?= OFF
DIST := dist
WHEEL_STAMP := $(DIST)/.cuda-$(WHEEL_CUDA)

$(WHEEL_STAMP): $(STAMP) $(FASTFEED_SOURCES) README.md
	rm -rf $(DIST)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m build --outdir $(DIST)/raw \
	  -C cmake.define.FASTFEED_CUDA=$(WHEEL_CUDA) -C cmake.define.FASTFEED_TORCH_VIEWS=OFF .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/auditwheel repair --wheel-dir $(DIST) $(DIST)/raw/*.whl
	mv $(DIST)/raw/*.tar.gz $(DIST)/ && rm -rf $(DIST)/raw
	$(BIN)/auditwheel show $(DIST)/*.whl
	touch $@

wheel: $(WHEEL_STAMP)

# The suite against the installed wheel: a fresh venv (build/wheel-venv) holding only the wheel
# with its test extra (pytest, hypothesis, pytest-benchmark), NumPy and torch (pinned by
# constraints.txt), and a copy of tests/ (with bench/ and fuzz/corpus/, which some tests read)
# in a temporary folder outside the checkout, so that `import fastfeed` can only find the
# installed package; tools/check_installed.py asserts that first. Tests that need the optional
# packages (pandas, pyarrow, matplotlib, ...) skip, naming what is missing.
WHEEL_VENV := build/wheel-venv
test-wheel: $(WHEEL_STAMP)
	rm -rf $(WHEEL_VENV)
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q -c constraints.txt torch==2.13.0 "$$(ls $(DIST)/*.whl)[test]"
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  mkdir -p "$$tmp/fuzz" && cp -r tests bench "$$tmp/" && cp -r fuzz/corpus "$$tmp/fuzz/" && cd "$$tmp" && \
	  $(CURDIR)/$(WHEEL_VENV)/bin/python $(CURDIR)/tools/check_installed.py --cuda $(WHEEL_CUDA) && \
	  $(CURDIR)/$(WHEEL_VENV)/bin/python -m pytest -q -ra -p no:cacheprovider tests
