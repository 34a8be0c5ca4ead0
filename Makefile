# `make demo` and `make test` work on a fresh clone: each creates .venv if missing and installs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vild-installed
OPENCV := $(shell sed -n 's/^OPENCV = "\(.*\)"/\1/p' setup.py)
# TensorFlow's C++ log off, as vild's scripts set it (level 2 still printed the cuInit error line
# of every CPU-only process: 16 in one make demo); a level you set is kept; a script's --verbose
# shows everything.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install demo ablations mechanics-demo test bench clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# lvis and tf-models-official each bring an OpenCV package owning cv2/: the headless one
	# goes last so a machine without libGL still imports cv2.
	$(PY) -m pip install --quiet --force-reinstall --no-deps opencv-python-headless==$(OPENCV)
	touch $(STAMP)

install: $(STAMP)

# The whole ViLD pipeline on the synthetic world (docs/synthetic_benchmark.md): stages cached in
# runs/synthetic/, results in results/synthetic/RESULTS.md.
demo: install
	$(PY) scripts/run_synthetic_benchmark.py

# The paper's findings beyond the main table (docs/synthetic_benchmark.md), each over the demo's
# seeds; reuses the stages of `make demo` (same runs/synthetic/), results in
# results/synthetic/ABLATIONS.md.
ablations: install
	$(PY) scripts/run_ablations.py

# A minute's look at the mechanics: a tiny ViLD trained briefly, detecting by names.
mechanics-demo: install
	$(PY) scripts/demo.py

# Two pytest workers (pytest-xdist), one test module each at a time so a module's fixtures are
# built once; the modules marked `pipeline` go first (tests/conftest.py). TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Regenerates BENCHMARKS.md (sized for under 20 minutes on 2 cores; docs/benchmarks.md).
bench: install
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info
