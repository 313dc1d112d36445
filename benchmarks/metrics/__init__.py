"""Pure metric functions over numpy arrays (no file I/O, no pipeline)."""
