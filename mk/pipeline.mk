# Pipeline (issue 5): detection + landmarks + pose + gender on images and folders (Section 3.3).
#   make detect IMAGES="photo.jpg some/folder" [MODEL=models/hyperface] [DETECT_OUT=runs/detect] [DETECT_ARGS="--proposals quality"]
#   make speed [SPEED_ARGS=--quick]      CPU timings (benchmarks/speed.py)
#   make mean-shape                      recompute pipeline/mean_shape_aflw21.json from aflw_crops
#   make test-pipeline                   the pipeline's tests
IMAGES ?= $(DATA)/afw_sample
MODEL ?= models/hyperface
DETECT_OUT ?= runs/detect
DETECT_ARGS ?=
SPEED_ARGS ?=

.PHONY: detect speed mean-shape test-pipeline

detect: setup
	$(PY) -m pipeline run $(IMAGES) --model $(MODEL) --out $(DETECT_OUT) $(DETECT_ARGS)

speed: setup
	$(PY) benchmarks/speed.py $(SPEED_ARGS)

mean-shape: setup
	$(PY) -m pipeline.make_mean_shape

test-pipeline: setup
	$(PY) -m pytest tests/test_pipeline*.py -q
