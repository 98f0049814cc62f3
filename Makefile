# make up     bring up the single-host lab (deploy/up.sh: installs what is missing first)
# make test   run the whole test suite (deploy/test.sh); extra pytest arguments: make test ARGS="-k watch"
# make bench  run every bench/bench_*.py, then write docs/benchmarks.md from bench/results/*.json

PYTHON ?= .venv/bin/python
BENCHES := $(sort $(wildcard bench/bench_*.py))

.PHONY: up test bench bench-report

up:
	./deploy/up.sh $(ARGS)

test:
	./deploy/test.sh $(ARGS)

# Old results are removed first; every benchmark runs even if an earlier one crashed (Ctrl-C
# stops all); the report is written from the results there are, and make fails if any benchmark
# did. A figure that misses its target is reported, not an error. Knobs (environment): BENCH_QUIET_WAIT,
# BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S (bench/harness.py), BENCH_PYSPY=DIR (profile
# the apiserver with py-spy, if installed), and the per-benchmark sizes in each script's docstring.
bench:
	@if [ ! -x $(PYTHON) ] || ! command -v etcd >/dev/null 2>&1; then ./deploy/install.sh; fi
	@rm -f bench/results/*.json; status=0; for b in $(BENCHES); do \
	  echo "== $$b"; \
	  rc=0; $(PYTHON) $$b || rc=$$?; \
	  if [ $$rc -ge 128 ]; then exit $$rc; fi; \
	  if [ $$rc -ne 0 ]; then echo "== $$b failed ($$rc)" >&2; status=1; fi; \
	done; \
	$(PYTHON) bench/report.py || status=1; \
	exit $$status

bench-report:
	$(PYTHON) bench/report.py
