import sys

from pipeline.cli import main

if __name__ == "__main__":  # Dask's spawned workers import this module as __mp_main__
    sys.exit(main())
