"""Section 5 benchmarks of HyperFace: evaluators (benchmarks.metrics), dataset loaders
(benchmarks.datasets), the detection runner (benchmarks.run_detection), scoring and reports.

Evaluators are pure functions over numpy arrays and never import the pipeline; only
run_detection does, lazily, so everything else works without Caffe.
"""
