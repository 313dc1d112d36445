# data_prep targets: datasets -> region-sample LMDB pairs (`python -m data_prep --help`).
#   make lmdb-helen        HELEN (300-W) trainset + testset     -> build/lmdb/helen_{train,test}
#   make lmdb-aflw-crops   aflw_crops (LIMIT images, default all) -> build/lmdb/aflw_crops
#   make lmdb-wider        WIDER FACE train subset               -> build/lmdb/wider
#   make lmdb-utkface      UTKFace gender chips                  -> build/lmdb/utkface
#   make lmdb-mix          training mix (MIX=...)                -> build/lmdb/train_mix
#   make test-data-prep    data_prep tests;  make bench-data-prep  speed benchmark
# DATA (the dataset folder) comes from the top-level Makefile.
LMDB_DIR ?= $(ROOT)/build/lmdb
LIMIT ?=
MIX ?= aflw_crops=4000,wider=600,helen=870,utkface=1500
DATA_PREP = $(PY) -m data_prep
DATA_PREP_LIMIT = $(if $(LIMIT),--limit $(LIMIT))

.PHONY: lmdb-helen lmdb-aflw-crops lmdb-wider lmdb-utkface lmdb-mix test-data-prep bench-data-prep

lmdb-helen: setup
	$(DATA_PREP) build --dataset 300w --root $(DATA)/helen --split train --out $(LMDB_DIR)/helen_train $(DATA_PREP_LIMIT)
	$(DATA_PREP) build --dataset 300w --root $(DATA)/helen --split test --out $(LMDB_DIR)/helen_test $(DATA_PREP_LIMIT)

lmdb-aflw-crops: setup
	$(DATA_PREP) build --dataset aflw_crops --root $(DATA)/aflw_crops --out $(LMDB_DIR)/aflw_crops $(DATA_PREP_LIMIT)

lmdb-wider: setup
	$(DATA_PREP) build --dataset wider --root $(DATA)/wider_train --out $(LMDB_DIR)/wider $(DATA_PREP_LIMIT)

lmdb-utkface: setup
	$(DATA_PREP) build --dataset utkface --root $(DATA)/utkface --out $(LMDB_DIR)/utkface $(DATA_PREP_LIMIT)

lmdb-mix: setup
	$(DATA_PREP) mix --out $(LMDB_DIR)/train_mix --data-root $(DATA) --mix $(MIX)

test-data-prep: setup
	$(PY) -m pytest tests/test_data_prep*.py -q -x

bench-data-prep: setup
	$(PY) benchmarks/data_prep_speed.py --limit $(or $(LIMIT),20)
