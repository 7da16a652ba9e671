#!/usr/bin/env python3
"""Write layer_decay.json: timm's `param_groups_layer_decay` lr_scale per parameter for two
small ViTs, the reference of catlip's `AdamW.layerDecayScales` (Tests/ViTTests/OptimizerTests).

    /opt/catlip-peers/bin/python Tests/ViTTests/Fixtures/make_layer_decay_fixture.py

Needs torch and timm (the peer venv; torchvision is imported through
Benchmarks/peers/torchvision_compat.py). Run by hand; the tests read the JSON only.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "Benchmarks", "peers"))
from torchvision_compat import import_torchvision  # noqa: E402

import_torchvision()
import timm  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402
from timm.optim._param_groups import param_groups_layer_decay  # noqa: E402

CASES = [
    {"name": "avg_depth2", "depth": 2, "decay": 0.5, "global_pool": "avg", "class_token": False},
    {"name": "token_depth3", "depth": 3, "decay": 0.75, "global_pool": "token", "class_token": True},
]

out = {"timm": timm.__version__, "cases": []}
for c in CASES:
    m = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=c["depth"], num_heads=2, num_classes=3,
                          global_pool=c["global_pool"], class_token=c["class_token"],
                          fc_norm=c["global_pool"] == "avg")
    names = {id(p): n for n, p in m.named_parameters()}
    scales = {}
    for g in param_groups_layer_decay(m, weight_decay=0.05, layer_decay=c["decay"]):
        for p in g["params"]:
            scales[names[id(p)]] = g["lr_scale"]
    out["cases"].append({**c, "lr_scale": dict(sorted(scales.items()))})
with open(os.path.join(HERE, "layer_decay.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write("\n")
print(json.dumps(out)[:200])
