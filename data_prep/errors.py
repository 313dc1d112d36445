"""The one exception of data_prep: bad input named by its file, shown as a single line."""
from __future__ import annotations

from pathlib import Path


class DataPrepError(Exception):
    """Bad input data. str() is one line: '<path>: <problem>'."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable across multiprocessing workers
        return (DataPrepError, (self.path, self.problem))
