"""The error type of the benchmarks' own loaders: bad or missing benchmark files, named by path.
Sets read with data_prep's readers raise data_prep's DataPrepError; both are core.errors.HyperFaceError,
which the benchmark commands catch."""
from __future__ import annotations

from core.errors import HyperFaceError


class BenchmarkDataError(HyperFaceError):
    """A benchmark file is missing or malformed. str() is one line: '<path>: <problem>'."""
