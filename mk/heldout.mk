# Held-out evaluation of a trained model (issue 8): GT-box evaluation on every held-out set
# (benchmarks/gt_box_eval.py) + full detection (selective search fast, IRP, L-NMS) on afw_sample and
# the first DET_LIMIT HELEN testset images, all in ONE report: $(HELDOUT_OUT)/report.md + PNGs.
#   make bench-heldout MODEL=models/hyperface [HELDOUT_OUT=runs/bench/heldout] [DET_LIMIT=30]
# Resumable: detection skips images whose JSON exists; GT-box predictions are cached per set.
# Time (2 cores): GT boxes ~1900 faces at ~40-80 faces/s; detection ~10-28 s/image (1000-2000
# proposals); DET_LIMIT=30 keeps the whole target near 10 min on idle cores.
HELDOUT_DATA ?= $(DATA)
HELDOUT_OUT ?= runs/bench/heldout
DET_LIMIT ?= 30

.PHONY: bench-heldout test-heldout

bench-heldout: setup
	@test -d $(MODEL) || { echo "bench-heldout: model folder $(MODEL) not found (train one or pass MODEL=DIR)" >&2; exit 2; }
	$(PY) -m benchmarks afw --data $(HELDOUT_DATA)/afw_sample --model $(MODEL) --out $(HELDOUT_OUT)/detect_afw
	$(PY) -m benchmarks ibug --data $(HELDOUT_DATA)/helen/testset --model $(MODEL) --out $(HELDOUT_OUT)/detect_helen --limit $(DET_LIMIT)
	$(PY) -m benchmarks.gt_box_eval --model $(MODEL) --out $(HELDOUT_OUT) --data $(HELDOUT_DATA) \
	    --det-afw $(HELDOUT_OUT)/detect_afw/results --det-helen $(HELDOUT_OUT)/detect_helen/results --det-limit $(DET_LIMIT)

test-heldout: setup
	$(PY) -m pytest tests/test_heldout.py -q
