"""The nets of HyperFace as data: one folder per model with train_val/deploy/solver prototxt.

Python here only rewrites data sources and solver fields (netspec_utils), copies weights between
nets (net_surgery) and generates HF-ResNet (hf_resnet/generate.py); nets are not built in code.
"""
from pathlib import Path

PROTOTXT_DIR = Path(__file__).resolve().parent
MODELS = ("rcnn_face", "rcnn_fiducial", "rcnn_pose", "rcnn_gender", "multitask_face", "hyperface",
          "hf_resnet", "hyperface_ibug68", "fast_hyperface_ssd")


def model_path(model: str, kind: str = "deploy") -> Path:
    """Path of prototxt/<model>/<kind>.prototxt (kind: deploy, train_val or solver)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return PROTOTXT_DIR / model / f"{kind}.prototxt"
