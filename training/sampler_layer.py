"""Caffe Python layer that feeds a train net from training.sampler (tops: data, label).

Used in place of the two TRAIN-phase Data layers when a stage runs with a sampler spec
(training/stage.py rewrites the net). `param_str` is the path of the spec JSON. The stage sets
`iteration` after a restore so the batches of a resumed run equal those of an uninterrupted one.
"""
from __future__ import annotations

import caffe

from training.sampler import sampler_from_spec


class RegionSamplerLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(top) != 2:
            raise ValueError("RegionSamplerLayer has two tops: data, label")
        self.sampler = sampler_from_spec(self.param_str)
        self.iteration = 0
        size = self.sampler.cfg.input.size
        n = self.sampler.batch_size
        top[0].reshape(n, 3, size, size)
        from core.labels import LABEL_LENGTH
        top[1].reshape(n, LABEL_LENGTH, 1, 1)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        data, labels = self.sampler.batch(self.iteration)
        top[0].data[...] = data
        top[1].data[...] = labels
        self.iteration += 1

    def backward(self, top, propagate_down, bottom):
        pass
