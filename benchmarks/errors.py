"""The one error type of the benchmarks: bad or missing benchmark files, named by path."""
from __future__ import annotations

from pathlib import Path


class BenchmarkDataError(Exception):
    """A benchmark file is missing or malformed. str() is one line: '<path>: <problem>'."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
