# Fast-HyperFace proposal net (Section 5.6): SSD training data, training run and export.
#   make lmdb-ssd              whole images + face boxes -> $(SSD_OUT)/lmdb/ssd_lmdb (AnnotatedDatum)
#   make train-fast-hyperface  lmdb-ssd -> `python -m training stage fast_hyperface_ssd` -> model directory
#        [SSD_OUT=runs/train_ssd] [SSD_MIX=wider=1239:train-fit,helen=870] [SSD_ITERS=5500] [SSD_BATCH=16]
#        [SSD_LR=0.01] [SSD_SEED=0] [SSD_EXPORT=$(SSD_OUT)/model] [DATA=../shared/data]
#   make export-ssd            the stage's final weights (or newest snapshot) -> $(SSD_EXPORT), BatchNorm folded
#        [SSD_PREVIOUS=models/hyperface/proposals]  the model the stage started from: its record is kept
# The exported folder is what `HyperFace(model_dir, proposals="ssd", ssd_model_dir=$(SSD_EXPORT))` loads
# (or copy it to <model_dir>/proposals/). Rerunning resumes the LMDB build and the newest solverstate.
SSD_OUT ?= $(ROOT)/runs/train_ssd
SSD_MIX ?= wider=1239:train-fit,helen=870
# The shipped proposal net's first piece: these settings, stopped (SIGTERM, snapshot) at iteration 4,874;
# later pieces fine-tuned it (python -m training stage --init ..., lr 0.001 / 0.0005 poly; README "Training",
# models/hyperface/proposals/model.json).
SSD_ITERS ?= 5500
SSD_BATCH ?= 16
# Without BatchNorm the solver's base_lr 0.001 diverged from random init on raw-pixel input (NaN within
# 6 iterations) and 0.0001 learned slowly; with BatchNorm after every base convolution (--batchnorm,
# folded at export) SSD_LR trains from scratch.
SSD_LR ?= 0.01
SSD_SNAPSHOT_EVERY ?= 250
# Caffe's random seed (the AnnotatedData sampler's crops); a fine-tuning piece takes its own
SSD_SEED ?= 0
SSD_EXPORT ?= $(SSD_OUT)/model

.PHONY: lmdb-ssd train-fast-hyperface export-ssd test-ssd

lmdb-ssd: setup
	$(PY) -m data_prep ssd --out $(SSD_OUT)/lmdb --data-root $(DATA) --mix $(SSD_MIX)

train-fast-hyperface: lmdb-ssd
	$(PY) -m training stage fast_hyperface_ssd --lmdb $(SSD_OUT)/lmdb --out $(SSD_OUT)/stage --batchnorm \
	  --iters $(SSD_ITERS) --batch $(SSD_BATCH) --lr $(SSD_LR) --lr-policy poly --power 1 \
	  --snapshot-every $(SSD_SNAPSHOT_EVERY) --seed $(SSD_SEED)
	$(MAKE) export-ssd

export-ssd: setup
	$(PY) -m training export-ssd --stage $(SSD_OUT)/stage --lmdb $(SSD_OUT)/lmdb --out $(SSD_EXPORT) \
	  $(if $(SSD_PREVIOUS),--previous $(SSD_PREVIOUS))
	@echo "use it with --proposals ssd --ssd-model $(SSD_EXPORT), or copy it to <model_dir>/proposals/"

test-ssd: setup
	$(PY) -m pytest tests/test_ssd_data.py -q -x
