# `make run` serves FastSock on the embedded database; `make test` runs every check CI runs.
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
SFU_STAMP := $(VENV)/.installed-sfu

.PHONY: run sfu test fuzz lint format bench bench-cluster bench-sfu lock clean

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Dependencies come from the lock files in requirements/ (`make lock`), each package at its
# pinned version and checked against its hashes; then the project itself, editable (no hash:
# it is this checkout). `run` needs only the runtime set (run.txt); the test set (test.txt)
# adds the browsers' driver, WebRTC, moto, the MongoDB stand-in and the checkers.
INSTALL_LOCKED = $(PY) -m pip install --quiet --require-hashes -r $< \
	&& $(PY) -m pip install --quiet --no-deps -e .

$(RUN_STAMP): requirements/run.txt pyproject.toml | $(PY)
	$(INSTALL_LOCKED)
	@touch $(RUN_STAMP)

# test.txt holds run.txt and sfu.txt at the same versions: it stands for both.
$(TEST_STAMP): requirements/test.txt pyproject.toml | $(PY)
	$(INSTALL_LOCKED)
	@touch $(TEST_STAMP) $(SFU_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/fastsock serve

# The SFU worker's extra pins aiortc and av exactly (it relies on their private internals).
$(SFU_STAMP): requirements/sfu.txt pyproject.toml | $(PY)
	$(INSTALL_LOCKED)
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
	$(VENV)/bin/mypy
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

# Regenerate the lock files from pyproject.toml (after changing a dependency there). Pins
# already in test.txt are kept; LOCK_ARGS=--upgrade moves every package to its newest allowed
# version, LOCK_ARGS='--upgrade-package NAME' just that one. Resolved for this interpreter
# (CPython 3.13, Linux: the image's platform), with the hashes of every file of each pinned
# version. test.txt holds everything; run.txt and sfu.txt are its subsets at its versions
# (pinned by it as a constraint, so LOCK_ARGS does not apply to them). build.txt: what building
# the project's own wheel needs (setuptools), for the image (Dockerfile).
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(VENV)/bin/pip-compile --quiet \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

lock: | $(PY)
	$(PY) -m pip install --quiet 'pip-tools>=7.4,<8'
	$(PIP_COMPILE) $(LOCK_ARGS) --extra sfu --extra test -o requirements/test.txt pyproject.toml
	$(PIP_COMPILE) --upgrade -c requirements/test.txt --extra sfu -o requirements/sfu.txt \
		pyproject.toml
	$(PIP_COMPILE) --upgrade -c requirements/test.txt -o requirements/run.txt pyproject.toml
	$(PIP_COMPILE) $(LOCK_ARGS) --only-build-deps --build-deps-for wheel \
		-o requirements/build.txt pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache
