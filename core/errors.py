"""The one exception base of the product, and the model-file error that core's model I/O raises.

Every error HyperFace raises on bad input (data_prep, pipeline, benchmarks, prototxt tools, demo)
is a HyperFaceError, so a command line catches one type and prints one line, and no stage has to
translate another stage's error. str() is '<path>: <problem>' when a file is at fault, else the
problem alone.
"""
from __future__ import annotations

from pathlib import Path


class HyperFaceError(Exception):
    """Bad input, named by its file. HyperFaceError(path, problem) or HyperFaceError(problem)."""

    def __init__(self, path: str | Path | None, problem: str | None = None):
        if problem is None:                      # one argument: the problem, no file at fault
            path, problem = None, path
        self.path = str(path) if path is not None else ""
        self.problem = str(problem)
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)

    def __reduce__(self):  # picklable across multiprocessing workers, subclass kept
        return (type(self), (self.path or None, self.problem))


class ModelError(HyperFaceError):
    """A model directory, prototxt or weight file that cannot be loaded."""
