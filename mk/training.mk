# Training chain of Section 4 (`python -m training --help`):
#   make train-hyperface [TRAIN_OUT=runs/train_hyperface] [TRAIN_MIX=set=N,...] [DATA=../shared/data]
#        [RCNN_ITERS=N] [HYPERFACE_ITERS=N] [RCNN_LR=0.01] [HYPERFACE_LR=0.002] [TRAIN_BATCH=32] [ALEXNET=bvlc_alexnet.caffemodel]
#        [EXPORT=models/hyperface]
# data_prep mix -> R-CNN Face -> net surgery -> HyperFace -> model directory. Rerunning the same
# command resumes every step (cached proposals, LMDB progress, newest solverstate).
# A user with AFLW builds its LMDB with `python -m data_prep build --dataset aflw ...` and passes
# TRAIN_LMDB=that/folder instead of a mix.
TRAIN_OUT ?= $(ROOT)/runs/train_hyperface
TRAIN_MIX ?= aflw_crops=2500,wider=300,helen=400,utkface=1000
TRAIN_LMDB ?=
RCNN_ITERS ?= 1000
HYPERFACE_ITERS ?= 2100
# From scratch, R-CNN Face learns at 0.01; HyperFace diverged at 0.01 after ~800 iterations here.
RCNN_LR ?= 0.01
HYPERFACE_LR ?= 0.002
TRAIN_BATCH ?= 32
SNAPSHOT_EVERY ?= 100
ALEXNET ?=
EXPORT ?= $(TRAIN_OUT)/model
# DATA (dataset root) comes from mk/data_prep.mk.

.PHONY: train-hyperface

train-hyperface: setup
	$(PY) -m training chain --out $(TRAIN_OUT) --mix $(TRAIN_MIX) --data-root $(DATA) \
	  --rcnn-iters $(RCNN_ITERS) --hyperface-iters $(HYPERFACE_ITERS) --batch $(TRAIN_BATCH) \
	  --rcnn-lr $(RCNN_LR) --hyperface-lr $(HYPERFACE_LR) \
	  --snapshot-every $(SNAPSHOT_EVERY) --export $(EXPORT) \
	  $(if $(TRAIN_LMDB),--lmdb $(TRAIN_LMDB)) $(if $(ALEXNET),--alexnet $(ALEXNET))
