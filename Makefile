# HyperFace, Caffe-faithful — top-level Makefile.
#
# Targets: setup (venv + real CPU Caffe, cached; idempotent), test, clean, distclean,
#          clean-caffe-cache; other areas add theirs in mk/<area>.mk (included below).
#
# Variables for mk/*.mk (every recipe already runs with this environment exported):
#   ROOT          repository root (absolute)
#   VENV          $(ROOT)/.venv
#   PY            $(VENV)/bin/python           e.g.  $(PY) -c "import caffe"
#   CAFFE_PREFIX  Caffe install prefix in the machine-wide cache
#                 (bin/caffe, lib/libcaffe.so, python/caffe/ with _caffe.so + caffe_pb2.py)
#   CAFFE         $(CAFFE_PREFIX)/bin/caffe    e.g.  $(CAFFE) train --solver=...
#   RUN           env PYTHONPATH=... LD_LIBRARY_PATH=... PATH=...  (explicit form of the
#                 exported environment, for commands run outside make's own env)
#   DATA          the dataset folder (default ../shared/data = core.config.DATA_ROOT)
#   SETUP_STAMP   file that exists once `make setup` succeeded: make your targets depend
#                 on `setup` (phony, cheap) or on $(SETUP_STAMP).
# Exported to every recipe: HYPERFACE_ROOT, CAFFE_PREFIX,
#   PYTHONPATH=$(CAFFE_PREFIX)/python:$(ROOT)  LD_LIBRARY_PATH=$(CAFFE_PREFIX)/lib:...
#   PATH=$(CAFFE_PREFIX)/bin:$(VENV)/bin:...   so plain `python` and `caffe` work too.
# In a shell: `source scripts/env.sh` (same locations) or `scripts/run <cmd>`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
CAFFE_PREFIX := $(shell bash $(ROOT)/scripts/caffe_prefix.sh)
CAFFE := $(CAFFE_PREFIX)/bin/caffe
SETUP_STAMP := $(VENV)/.setup.stamp
# The datasets (../shared/data/README.md), the same folder as core.config.DATA_ROOT; every mk/*.mk
# default data path is below it. `make ... DATA=/my/data` moves them all.
# one rule for the data folder: core.config.DATA_ROOT (expanded when a recipe runs, after setup)
DATA ?= $(or $(HYPERFACE_DATA),$(shell cd $(ROOT) && $(PY) -c 'from core.config import DATA_ROOT; print(DATA_ROOT)' 2>/dev/null),$(ROOT)/../shared/data)

export HYPERFACE_ROOT := $(ROOT)
export CAFFE_PREFIX
export PYTHONPATH := $(CAFFE_PREFIX)/python:$(ROOT)
export LD_LIBRARY_PATH := $(CAFFE_PREFIX)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export PATH := $(CAFFE_PREFIX)/bin:$(VENV)/bin:$(PATH)
RUN := env PYTHONPATH=$(PYTHONPATH) LD_LIBRARY_PATH=$(LD_LIBRARY_PATH) PATH=$(PATH)

.PHONY: help setup setup-train test clean distclean clean-caffe-cache

help:
	@echo "make setup   - apt deps, .venv, build/reuse Caffe at $(CAFFE_PREFIX)"
	@echo "make test    - pytest (tests/), fails when no test is collected"
	@echo "make clean   - remove caches and the setup stamp (keeps .venv and the Caffe cache)"
	@echo "make distclean - clean + remove .venv"
	@echo "make demo    - inference-only set-up, shipped model on examples/images (MODEL=, IMAGES=, DEMO_OUT=)"
	@echo "make detect  - pipeline on IMAGES into DETECT_OUT (mk/pipeline.mk)"
	@echo "make train-hyperface - data_prep mix -> R-CNN Face -> surgery -> HyperFace (mk/training.mk)"
	@echo "make train-fast-hyperface - SSD proposal net of Fast-HyperFace (mk/ssd.mk)"
	@echo "make bench-afw|bench-fddb|bench-pascal|bench-aflw|bench-ibug|bench-celeba|bench-ablation|bench-heldout"
	@echo "make lmdb-mix|lmdb-helen|... - data_prep LMDBs (mk/data_prep.mk); make bench-nets / speed - CPU speed"

setup: $(SETUP_STAMP)

# Re-run when the inputs change, or when the cached Caffe/venv went missing.
$(SETUP_STAMP): requirements.txt $(sort $(wildcard third_party/caffe/*.patch)) scripts/setup_caffe.sh \
                scripts/caffe_prefix.sh $(CAFFE_PREFIX)/.complete $(PY)
	bash $(ROOT)/scripts/setup_caffe.sh
	@touch $@

# Missing -> treated as changed, which re-runs the setup script above.
$(CAFFE_PREFIX)/.complete $(PY): ;

# pytest exit 5 (no tests collected) is a failure.
# The GPU piece's extra (requirements-train.txt: PyTorch for training/torch_net.py), which the tests of
# the mirror need; the product does not. Idempotent.
setup-train: setup
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q -r requirements-train.txt

test: setup setup-train
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests -> failing" >&2; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(SETUP_STAMP) .pytest_cache
	find $(ROOT) -path $(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

clean-caffe-cache:
	rm -rf $(CAFFE_PREFIX)

-include $(sort $(wildcard $(ROOT)/mk/*.mk))
