# imcsim: `make demo` and `make test` work from a fresh clone with nothing installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch, installed before the project so that pip never pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint install bench sweep-example reproduce clean fuzz compress-tables

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/imcsim demo

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_kernels.py

# The robustness fuzz of tests/test_robustness.py at a larger size than CI runs: FUZZ_N cases
# of each kind (CLI arguments, arch, workload and sweep YAMLs), from seed FUZZ_SEED.
FUZZ_N ?= 300
FUZZ_SEED ?= 0
fuzz: install
	IMCSIM_FUZZ_N=$(FUZZ_N) IMCSIM_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_robustness.py -k fuzz

# The shipped example sweep (digits; runs from a fresh clone, ~1.5 min on two cores).
sweep-example: install
	$(BIN)/imcsim sweep examples/sweep_isaac_adc.yaml

# The reports and sweeps in docs/ (needs MNIST and CIFAR-10 in $(DATA); about an hour on two
# cores). Each step resumes where it stopped.
DATA ?= ../shared/data
REPORT := docs/reports/isaac_lenet5
reproduce: install
	$(BIN)/imcsim run isaac_32nm lenet5_mnist --samples 2000 --batch-size 100 --data-dir $(DATA) --out $(REPORT) --quiet
	$(BIN)/imcsim montecarlo isaac_32nm lenet5_mnist --chips 8 --samples 500 --vary variation.cell.sigma=0,0.005,0.01,0.02,0.05 --data-dir $(DATA) --out $(REPORT) --quiet
	$(BIN)/imcsim report $(REPORT)/result.json --format html
	$(BIN)/imcsim report $(REPORT)/result.json --format md
	$(BIN)/imcsim sweep examples/sweep_isaac_adc.yaml --out docs/sweeps/isaac_adc_digits --quiet
	$(BIN)/imcsim sweep examples/sweep_isaac_cifar10.yaml --data-dir $(DATA) --out docs/sweeps/isaac_cifar10_local --quiet
	$(BIN)/python bench/sweep_localcluster.py examples/sweep_isaac_cifar10.yaml --workers 2 --data-dir $(DATA) --out docs/sweeps/isaac_cifar10_dask

# The compression tables (issue 10, docs/compression_tables.md): `imcsim run` on the ISAAC
# config of every compressed workload in workloads/compressed and of its dense base, beside
# the accuracy of the compression manifests. Rerun after a change of the mapping. The
# compressed workloads themselves come from bench/compress_experiments.py (hours).
COMPRESS_SAMPLES ?= 32
compress-tables: install
	$(BIN)/python bench/compress_tables.py --data-dir $(DATA) --samples $(COMPRESS_SAMPLES)

clean:
	rm -rf results .pytest_cache .ruff_cache build *.egg-info
