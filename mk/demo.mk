# Demo (issue 8): the README's first command — the trained model on sample photos, no Caffe build.
#   make demo [MODEL=models/hyperface] [IMAGES="a.jpg some/folder"] [DEMO_OUT=runs/demo] [DEMO_ARGS="--proposals quality"]
#   make setup-inference   .venv + caffe_pb2 only (scripts/setup_inference.sh; ~1 s once done)
# IMAGES defaults to examples/images here (only a value given on the command line or in the
# environment is used: pipeline.mk's default for `make detect` is not the demo's).
MODEL ?= models/hyperface
DEMO_OUT ?= runs/demo
DEMO_ARGS ?=
DEMO_IMAGES = $(if $(filter command line environment environment override,$(origin IMAGES)),$(IMAGES),examples/images)

.PHONY: setup-inference demo demo-model

# `make setup` re-runs when the steps it shares with setup-inference change.
$(SETUP_STAMP): scripts/setup_lib.sh

setup-inference:
	@bash $(ROOT)/scripts/setup_inference.sh

# Checked before setup-inference, so a missing model fails at once, in one line.
demo-model:
	$(if $(wildcard $(MODEL)/.),,$(error make demo: model directory '$(MODEL)' not found (the trained model ships in models/hyperface; pass MODEL=DIR)))
	@true

demo: demo-model setup-inference
	@$(PY) $(ROOT)/examples/demo.py $(DEMO_IMAGES) --model $(MODEL) --out $(DEMO_OUT) -- $(DEMO_ARGS)
