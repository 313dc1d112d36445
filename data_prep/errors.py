"""The one exception of data_prep: bad input named by its file, shown as a single line."""
from __future__ import annotations

from core.errors import HyperFaceError


class DataPrepError(HyperFaceError):
    """Bad input data. str() is one line: '<path>: <problem>' (picklable across workers)."""
