# dl3d: `make demo` and `make test` set everything up on a fresh machine (Python 3.11 + pip).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dl3d-installed
DEMO   ?= demo-out

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; the package is installed editable, so code edits need nothing.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/dl3d body make-model --out $(DEMO)/body-model
	$(BIN)/dl3d data make smpl-params --out $(DEMO)/smpl-params --videos 8 --frames 60 --shards 4
	$(BIN)/dl3d smpl export --input $(DEMO)/smpl-params --output $(DEMO)/smpl-export \
		--model $(DEMO)/body-model/smpl_procedural.pkl --meshes ply --workers 2
	$(BIN)/dl3d inspect $(DEMO)/smpl-export

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python bench/export_throughput.py

clean:
	rm -rf $(DEMO) .pytest_cache
