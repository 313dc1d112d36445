"""Training chain of Section 4: R-CNN Face (from scratch or a user's AlexNet), then HyperFace
initialised from it by net surgery, with resumable pycaffe solver loops and loss curves."""
