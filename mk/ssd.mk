# Fast-HyperFace proposal net (Section 5.6): SSD training data, training run and export.
#   make lmdb-ssd              whole images + face boxes -> $(SSD_OUT)/lmdb/ssd_lmdb (AnnotatedDatum)
#   make train-fast-hyperface  lmdb-ssd -> `python -m training stage fast_hyperface_ssd` -> model directory
#        [SSD_OUT=runs/train_ssd] [SSD_MIX=wider=1239,helen=870] [SSD_ITERS=3000] [SSD_BATCH=8]
#        [SSD_LR=0.0001] [SSD_EXPORT=$(SSD_OUT)/model] [DATA=../shared/data]
# The exported folder is what `HyperFace(model_dir, proposals="ssd", ssd_model_dir=$(SSD_EXPORT))` loads
# (or copy it to <model_dir>/proposals/). Rerunning resumes the LMDB build and the newest solverstate.
SSD_OUT ?= $(ROOT)/runs/train_ssd
SSD_MIX ?= wider=1239,helen=870
SSD_ITERS ?= 3000
SSD_BATCH ?= 8
# The solver's base_lr 0.001 diverges from random init on raw-pixel input (NaN within 6 iterations);
# 0.0001 trains (mbox_loss 44 -> 6 in 100 iterations of batch 2 on 20 WIDER images).
SSD_LR ?= 0.0001
SSD_SNAPSHOT_EVERY ?= 200
SSD_EXPORT ?= $(SSD_OUT)/model

.PHONY: lmdb-ssd train-fast-hyperface test-ssd

lmdb-ssd: setup
	$(PY) -m data_prep ssd --out $(SSD_OUT)/lmdb --data-root $(DATA) --mix $(SSD_MIX)

train-fast-hyperface: lmdb-ssd
	$(PY) -m training stage fast_hyperface_ssd --lmdb $(SSD_OUT)/lmdb --out $(SSD_OUT)/stage \
	  --iters $(SSD_ITERS) --batch $(SSD_BATCH) --lr $(SSD_LR) --snapshot-every $(SSD_SNAPSHOT_EVERY)
	$(PY) -c 'import json, sys; from pipeline.model_store import export_model; \
	  export_model("$(ROOT)/prototxt/fast_hyperface_ssd/deploy.prototxt", sys.argv[1], sys.argv[2], fp16=True, \
	    meta={"trained_on": json.load(open(sys.argv[3]))["sources"], "iterations": int(sys.argv[4]), \
	          "batch_size": int(sys.argv[5]), "base_lr": float(sys.argv[6])})' \
	  $(SSD_OUT)/stage/fast_hyperface_ssd_final.caffemodel $(SSD_EXPORT) $(SSD_OUT)/lmdb/manifest.json \
	  $(SSD_ITERS) $(SSD_BATCH) $(SSD_LR)
	@echo "Fast-HyperFace SSD model: $(SSD_EXPORT)  (HyperFace(..., proposals=\"ssd\", ssd_model_dir=\"$(SSD_EXPORT)\"))"

test-ssd: setup
	$(PY) -m pytest tests/test_ssd_data.py -q -x
