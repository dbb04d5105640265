# dl3d: `make demo` and `make test` set everything up on a fresh machine (Python 3.11 + pip).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dl3d-installed
DEMO   ?= demo-out
DEMO_VIDEO ?= demo-video-out

.PHONY: setup demo demo-video test test-fast bench clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; the package is installed editable, so code edits need nothing.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job on the embedded default (local Ray, local files, generated assets): synthetic walking
# videos in OpenPose JSON -> ingest -> SMPLify fit with meshes -> accuracy against the ground truth.
demo: setup
	$(BIN)/dl3d body make-model --out $(DEMO)/body-model
	$(BIN)/dl3d data make smpl-video --out $(DEMO)/videos --model $(DEMO)/body-model/smpl_procedural.pkl \
		--videos 8 --frames 60
	$(BIN)/dl3d ingest openpose --input $(DEMO)/videos/openpose --output $(DEMO)/keypoints \
		--image-width 1280 --image-height 720 --focal-length 1000 --videos-per-shard 2
	$(BIN)/dl3d smpl fit --input $(DEMO)/keypoints --output $(DEMO)/fit \
		--model $(DEMO)/body-model/smpl_procedural.pkl --meshes ply --workers 2
	$(BIN)/dl3d smpl evaluate --fit $(DEMO)/fit --truth $(DEMO)/videos/truth
	$(BIN)/dl3d inspect $(DEMO)/fit

# Video in, fitted bodies out, and back to video (nothing downloaded): a clip of the procedural body
# walking, rendered with pytorch3d -> ingest videos -> BlazePose -> SMPLify -> mesh overlay MP4.
demo-video: setup
	$(BIN)/dl3d body make-model --out $(DEMO_VIDEO)/body-model
	$(BIN)/dl3d data make body-clip --out $(DEMO_VIDEO)/clips --model $(DEMO_VIDEO)/body-model/smpl_procedural.pkl
	$(BIN)/dl3d ingest videos --input $(DEMO_VIDEO)/clips --output $(DEMO_VIDEO)/videos
	$(BIN)/dl3d pose detect --input $(DEMO_VIDEO)/videos --output $(DEMO_VIDEO)/keypoints
	$(BIN)/dl3d smpl fit --input $(DEMO_VIDEO)/keypoints --output $(DEMO_VIDEO)/fit \
		--model $(DEMO_VIDEO)/body-model/smpl_procedural.pkl --preset fast
	$(BIN)/dl3d smpl render --fit $(DEMO_VIDEO)/fit --videos $(DEMO_VIDEO)/videos \
		--model $(DEMO_VIDEO)/body-model/smpl_procedural.pkl --output $(DEMO_VIDEO)/render --side-view
	@echo "overlay videos:" && find $(DEMO_VIDEO)/render -name '*.mp4' | sort

# Two pytest-xdist workers, one file each at a time (module fixtures stay per file): most of the slow
# tests wait on Ray start-up, subprocesses and polling, so two workers overlap that waiting even on 2 cores.
PYTEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

bench: setup
	$(BIN)/python bench/export_throughput.py
	$(BIN)/python bench/smplify_throughput.py
	$(BIN)/python bench/smplify_accuracy.py
	$(BIN)/python bench/synsin_training.py
	$(BIN)/python bench/pose_detect.py

clean:
	rm -rf $(DEMO) $(DEMO_VIDEO) .pytest_cache
