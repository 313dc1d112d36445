# Training of Section 4 (`python -m training --help`). Every default lives in core/config.py
# (TrainingConfig) + config/hyperface.yaml; the variables below only override when set.
#
#   make train-hyperface [INIT_MODEL=models/hyperface] [TRAIN_OUT=~/.cache/hyperface/runs/hyperface]
#        [ITERS=N] [LR=x] [MINED=pool.jsonl] [EXPORT=dir] [DATA=../shared/data] [CONFIG=my.yaml]
#     one piece of a long schedule: sampler-fed training (training/sampler.py) from a model folder
#     (or resuming TRAIN_OUT's newest snapshot), held-out validation every training.val_every
#     iterations, export with the training record of every piece appended to model.json.
#   make mine-negatives MODEL=dir POOL=pool.jsonl ROUND=n [MINE_THRESHOLD=0.5] [MINE_PHOTOS=N]
#     one resumable round of hard-negative mining (training/mining.py) for the next piece's MINED.
#   make train-svm [SVM_MODEL=models/hyperface] [SVM_WORK=dir] [SVM_EXPORT=dir] [SVM_PHOTOS=N] [SVM_PROPOSALS=fast|ssd|fast+ssd]
#     the paper's linear SVM on fc_detection (training/detection_svm.py), compared with the softmax on
#     held-out proposals and folded into detection_score of SVM_EXPORT; then make calibrate-threshold MODEL=SVM_EXPORT.
#   make train-hyperface-scratch [SCRATCH_OUT=...] [TRAIN_MIX=set=N,...] [RCNN_ITERS=N] [HYPERFACE_ITERS=N]
#        [TRAIN_BATCH=N] [SNAPSHOT_EVERY=N] [SCRATCH_EXPORT=dir]
#     the from-scratch chain: data_prep mix LMDB -> R-CNN Face -> net surgery -> HyperFace -> export.
INIT_MODEL ?= $(ROOT)/models/hyperface
TRAIN_OUT ?= $(HOME)/.cache/hyperface/runs/hyperface
ITERS ?=
LR ?=
MINED ?=
CONFIG ?=
EXPORT ?= $(TRAIN_OUT)/model
VAL_AFW ?= $(DATA)/afw_sample
MINE_THRESHOLD ?= 0.5
MINE_PHOTOS ?=
TRAIN_MIX ?=
RCNN_ITERS ?=
HYPERFACE_ITERS ?=
TRAIN_BATCH ?=
SNAPSHOT_EVERY ?=
SCRATCH_OUT ?= $(HOME)/.cache/hyperface/runs/scratch
SCRATCH_EXPORT ?= $(SCRATCH_OUT)/model
SVM_MODEL ?= $(ROOT)/models/hyperface
SVM_WORK ?= $(HOME)/.cache/hyperface/svm/work
SVM_EXPORT ?= $(SVM_WORK)/model
SVM_PHOTOS ?=
SVM_PROPOSALS ?=
# DATA (dataset root) comes from the top-level Makefile.

.PHONY: train-hyperface mine-negatives train-hyperface-scratch train-svm

train-hyperface: setup
	$(PY) -m training piece --out $(TRAIN_OUT) --init $(INIT_MODEL) --data-root $(DATA) --export $(EXPORT) \
	  $(if $(VAL_AFW),--afw $(VAL_AFW)) $(if $(ITERS),--iters $(ITERS)) $(if $(LR),--lr $(LR)) \
	  $(if $(MINED),--mined $(MINED)) $(if $(CONFIG),--config $(CONFIG))

mine-negatives: setup
	$(PY) -m training mine --model $(MODEL) --pool $(POOL) --round $(ROUND) --threshold $(MINE_THRESHOLD) \
	  --data-root $(DATA) $(if $(MINE_PHOTOS),--photos-per-set $(MINE_PHOTOS)) $(if $(CONFIG),--config $(CONFIG))

train-svm: setup
	$(PY) -m training svm --model $(SVM_MODEL) --work $(SVM_WORK) --export $(SVM_EXPORT) $(if $(SVM_PHOTOS),--photos-per-set $(SVM_PHOTOS)) \
	  $(if $(SVM_PROPOSALS),--proposals $(SVM_PROPOSALS)) --data-root $(DATA) $(if $(CONFIG),--config $(CONFIG))

train-hyperface-scratch: setup
	$(PY) -m training chain --out $(SCRATCH_OUT) --data-root $(DATA) --export $(SCRATCH_EXPORT) \
	  $(if $(TRAIN_MIX),--mix $(TRAIN_MIX)) $(if $(RCNN_ITERS),--rcnn-iters $(RCNN_ITERS)) \
	  $(if $(HYPERFACE_ITERS),--hyperface-iters $(HYPERFACE_ITERS)) \
	  $(if $(TRAIN_BATCH),--batch $(TRAIN_BATCH)) $(if $(SNAPSHOT_EVERY),--snapshot-every $(SNAPSHOT_EVERY)) \
	  $(if $(CONFIG),--config $(CONFIG))

# A piece on a GPU (training/accelerated.py): the same sampler, labels and losses, run by a PyTorch mirror of
# prototxt/hyperface/deploy.prototxt; BatchNorm after every convolution from scratch, folded at export.
#   make pack-gpu-data [GPU_PACK=~/.cache/hyperface/gpu_pack]        here: data + net as upload chunks
#   (on the GPU machine)  cat chunk_* | tar xzf - -C /tmp/hf && \
#       python -m training.accelerated train --data-root /tmp/hf/data --net /tmp/hf/net.json --out OUT --iters 9500
#   make import-gpu-piece GPU_OUT=OUT [GPU_EXPORT=dir]               here: OUT -> model folder + record
GPU_PACK ?= $(HOME)/.cache/hyperface/gpu_pack
GPU_OUT ?=
GPU_EXPORT ?= $(HOME)/.cache/hyperface/runs/gpu/model
.PHONY: pack-gpu-data import-gpu-piece
pack-gpu-data: setup
	$(PY) -m training.accelerated pack --data-root $(DATA) --out $(GPU_PACK) $(if $(CONFIG),--config $(CONFIG))

import-gpu-piece: setup
	@test -n "$(GPU_OUT)" || { echo "make import-gpu-piece: set GPU_OUT=<folder the GPU piece wrote>" >&2; exit 2; }
	$(PY) -m training.accelerated import $(GPU_OUT) --export $(GPU_EXPORT) $(if $(CONFIG),--config $(CONFIG))
