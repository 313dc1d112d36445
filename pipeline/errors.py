"""Exceptions of the pipeline. Each carries the path it is about, so a CLI prints one line.
All are core.errors.HyperFaceError; ModelError (model files) lives in core with the model I/O."""
from __future__ import annotations

from core.errors import HyperFaceError, ModelError

__all__ = ["HyperFaceError", "PipelineError", "BadImageError", "ModelError", "GeometryError"]


class PipelineError(HyperFaceError):
    """An image or output the pipeline cannot handle: `str(err)` is one line naming the file and the problem."""


class BadImageError(PipelineError):
    """An input image that cannot be used (unreadable, truncated, empty ...)."""


class GeometryError(HyperFaceError, ValueError):
    """Landmarks from which no face box can be fitted (fewer than two usable points)."""
