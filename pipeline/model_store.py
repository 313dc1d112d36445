"""Re-export of core.model_store (model directories and caffemodel I/O moved to core/, which
training and pipeline both use); kept so `from pipeline.model_store import ...` keeps working."""
from core.model_store import (DEPLOY, META, MODEL_FORMAT_VERSION, WEIGHTS, WEIGHTS_FP16, Model,  # noqa: F401
                              atomic_write_bytes, caffemodel_bytes, export_model, load_model, read_caffemodel,
                              write_caffemodel)
