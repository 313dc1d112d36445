# prototxt/ (issue 3): nets as data. Targets: nets-check, nets-generate, nets-test, bench-nets.
.PHONY: nets-check nets-generate nets-test bench-nets

nets-generate: setup  ## rewrite prototxt/hf_resnet/{train_val,deploy}.prototxt from generate.py
	$(PY) prototxt/hf_resnet/generate.py

nets-check: setup     ## fail if the committed HF-ResNet prototxts drifted from generate.py
	$(PY) prototxt/hf_resnet/generate.py --check

nets-test: setup
	$(PY) -m pytest tests/test_nets*.py -q

bench-nets: setup     ## forward / forward+backward time per batch of 32, per-layer profile
	$(PY) benchmarks/net_speed.py --batch 32 --iters 3
