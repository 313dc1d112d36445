"""Exceptions of the pipeline. Each carries the path it is about, so a CLI prints one line."""
from __future__ import annotations


class PipelineError(Exception):
    """Base class: `str(err)` is one line naming the file (when there is one) and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path) if path is not None else ""
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class BadImageError(PipelineError):
    """An input image that cannot be used (unreadable, truncated, empty ...)."""


class ModelError(PipelineError):
    """A model directory, prototxt or weight file that cannot be loaded."""


class GeometryError(ValueError):
    """Landmarks from which no face box can be fitted (fewer than two usable points)."""
