#!/usr/bin/env python3
r"""PyTorch peer for `catlip serve` (issue 9's benchmark): a minimal FastAPI + uvicorn server
with the same `/v1/embed` contract (an image as the body; {"dim", "embeddings": [[...]]} with
the L2-normalised pooled pre-logits embedding) over the same model directory.

The model is timm's VisionTransformer built from config.json's model_args with
model.safetensors loaded strict=True; preprocessing is timm's eval transform for the model's
pretrained_cfg (resize to int(size / crop_pct), centre crop, ToTensor, mean/std), transparent
PNGs composited on white as catlip's decoder does. float32, eager, torch.no_grad(); with
--precision bf16 the forward runs under torch.autocast("cpu", dtype=torch.bfloat16) (what
timm's --amp-dtype bfloat16 does), the peer of `catlip serve --precision bf16`.

Two ways a user writes it (--mode):
  serial   `async def` endpoint: one forward at a time on the event loop (batch 1).
  threads  plain `def` endpoint: FastAPI runs requests in its thread pool, so forwards overlap.

Run by hand, not in CI (load from `catlip bench serve --url http://127.0.0.1:PORT ...`):

    PY=/opt/catlip-peers/bin/python   # pip install torch torchvision timm fastapi uvicorn pillow
    $PY Benchmarks/peers/serve_torch.py --model MODEL_DIR --port 8790 --threads 2 --mode serial
"""
import argparse
import io
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# (zeroshot_torch applies the torchvision workaround before importing timm)
from zeroshot_torch import load_model, load_rgb  # noqa: E402

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402


def decode_rgb(data):
    return load_rgb(io.BytesIO(data))  # zeroshot_torch's decode: alpha composited on white


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8790)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["serial", "threads"], default="serial")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, transform = load_model(args.model)
    app = FastAPI()

    def embed(data):
        try:
            x = transform(decode_rgb(data)).unsqueeze(0)
        except Exception as e:  # noqa: BLE001 - a bad image is the client's error
            return Response(json.dumps({"error": {"code": "bad_image", "message": str(e)}}), status_code=400,
                            media_type="application/json")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            e = model.forward_head(model.forward_features(x), pre_logits=True)
        e = torch.nn.functional.normalize(e.float(), dim=1)
        body = json.dumps({"dim": e.shape[1], "embeddings": e.tolist()})
        return Response(body, media_type="application/json")

    if args.mode == "serial":
        @app.post("/v1/embed")
        async def embed_serial(request: Request):
            return embed(await request.body())
    else:
        from starlette.concurrency import run_in_threadpool

        @app.post("/v1/embed")
        async def embed_threads(request: Request):
            # what FastAPI does with a plain `def` endpoint: the work runs in its thread pool
            return await run_in_threadpool(embed, await request.body())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    sys.exit(main())
