"""Re-export of core.net_shapes (prototxt shape inference moved to core/ with the model I/O)."""
from core.net_shapes import NetShapes, infer_shapes, random_weights, read_prototxt  # noqa: F401
