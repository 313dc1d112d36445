"""HyperFace test-time pipeline (Section 3.3): proposals, batched forward (ONNX Runtime by
default, OpenCV DNN as the fallback, or pycaffe), Iterative Region Proposals, Landmark-based NMS; a
one-call API and a folder CLI (python -m pipeline).

    from pipeline import HyperFace
    faces = HyperFace("models/hyperface").detect(cv2.imread("photo.jpg"))
"""
from core.face import Face
from pipeline.detector import HyperFace
from pipeline.geometry import box_from_landmarks

__all__ = ["Face", "HyperFace", "box_from_landmarks"]
