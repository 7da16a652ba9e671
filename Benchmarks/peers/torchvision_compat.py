"""Import torchvision next to a CPU-only torch (shared by the peer and fixture scripts).

PyPI's torchvision 0.28.0 is a CUDA build: next to torch 2.13.0+cpu its import fails with
"operator torchvision::nms does not exist", because its compiled ops never get registered.
Defining the schemas of the two ops it registers at import time (torchvision::nms and
torchvision::qnms) with torch.library and importing again makes the Python parts (PIL
transforms, timm models) usable. A proper CPU torchvision imports directly and is left alone.
"""

import sys

import torch
import torch.library

_SCHEMA_LIBRARY = None  # must stay alive for the life of the process


def import_torchvision():
    """Returns the torchvision module, applying the schema workaround when needed."""
    global _SCHEMA_LIBRARY
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error) and "torchvision::qnms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if _SCHEMA_LIBRARY is None:
            _SCHEMA_LIBRARY = torch.library.Library("torchvision", "DEF")
            _SCHEMA_LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _SCHEMA_LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401
    import torchvision

    return torchvision
