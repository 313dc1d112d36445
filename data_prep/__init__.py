"""data_prep: annotated face datasets -> region samples (Section 3.2) -> image + label LMDBs.

Readers (data_prep.readers) turn each dataset into core.records.ImageRecord lists; regions.py
makes labelled region samples; lmdb_io.py writes the Caffe LMDB pair; build.py and mix.py drive it;
`python -m data_prep build|mix` is the CLI.
"""
from data_prep.errors import DataPrepError

__all__ = ["DataPrepError"]
