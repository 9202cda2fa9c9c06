# `make run` serves FastSock on the embedded database; `make test` runs every check CI runs.
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
SFU_STAMP := $(VENV)/.installed-sfu

.PHONY: run sfu test fuzz lint format bench bench-cluster bench-sfu clean

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `run` needs only the runtime dependencies; the test extra (browsers' driver, WebRTC, moto,
# the MongoDB stand-in) is for `test`.
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/fastsock serve

# The SFU worker's extra pins aiortc and av exactly (it relies on their private internals).
$(SFU_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[sfu]'
	@touch $(SFU_STAMP) $(RUN_STAMP)

# One SFU worker for group calls, next to `make run` on this machine (README, "Group calls"):
# FASTSOCK_SFU_SECRET set, the same, for both; SFU_* settings override these defaults.
sfu: $(SFU_STAMP)
	SFU_SECRET="$${SFU_SECRET:-$$FASTSOCK_SFU_SECRET}" \
	SFU_PUBLIC_URL="$${SFU_PUBLIC_URL:-ws://127.0.0.1:8890/ws}" \
	SFU_CONTROL_URL="$${SFU_CONTROL_URL:-http://127.0.0.1:8888}" \
	$(VENV)/bin/fastsock-sfu

# The whole suite once per store backend: SQLite (the embedded default), then MongoDB (on the
# wire stand-in). Tests that do not depend on the backend run in the first pass only.
test: $(TEST_STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	FASTSOCK_TEST_BACKEND=sqlite $(VENV)/bin/pytest
	FASTSOCK_TEST_BACKEND=mongo $(VENV)/bin/pytest

# The fuzz suite (tests/fuzz) at length, on both backends: many more examples than `make test`
# tries, new ones each run; failing ones are kept in .hypothesis/ and tried first next time.
fuzz: $(TEST_STAMP)
	FASTSOCK_TEST_BACKEND=sqlite $(VENV)/bin/pytest tests/fuzz --hypothesis-profile=fuzz
	FASTSOCK_TEST_BACKEND=mongo $(VENV)/bin/pytest tests/fuzz --hypothesis-profile=fuzz

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(TEST_STAMP)
	$(PY) bench/fanout.py

# Two nodes on one Redis and the MongoDB stand-in, next to one node (bench/README.md).
bench-cluster: $(TEST_STAMP)
	$(PY) bench/fanout.py --servers fastsock,fastsock-mongo,fastsock-1node,fastsock-2nodes

# Group calls: an SFU worker forwarding 3 calls of 4 vs MediaRelay transcoding (bench/README.md).
bench-sfu: $(TEST_STAMP)
	$(PY) bench/sfu.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
