"""The explainer page (``GET /explain``) and its model walk (``POST /v1/walk``).

The page's playground computes convolutions and pooling in the browser (``static/explain.js``) on
the decks' worked examples. The walk runs a served classifier on one uploaded image and returns,
for every layer in the order it runs: its output (every channel, every value, as float32 numbers),
the weights of its convolution or linear layer, and its receptive field from
:func:`cnnlab.analysis.tracer.trace` (Araujo et al., Distill 2019: ``start``, ``jump``, ``size`` per
axis, so unit ``i`` sees input pixels ``start + i*jump`` to ``start + i*jump + size - 1``). It ends
with the softmax and the classification answer in the decks' JSON.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

MAX_VALUES = 2_000_000  # activations and weights sent per walk; beyond, later layers say "omitted"


def walk(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Every leaf layer's output, weights and receptive field for one normalised input 1 x C x H x W."""
    from ..analysis.tracer import trace

    model = model.eval()
    modules = dict(model.named_modules())
    with torch.no_grad():
        records, _, _, _ = trace(model, x)
    leaves = [r for r in records if r.is_leaf and r.module is not None and r.repeat == 0]
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                outputs.setdefault(name, output.detach().float().clone())
        return hook

    handles = [modules[r.name].register_forward_hook(keep(r.name)) for r in leaves if r.name in modules]
    try:
        with torch.no_grad():
            logits = model(x).float()
    finally:
        for h in handles:
            h.remove()
    budget = MAX_VALUES
    layers = []
    for r in leaves:
        out = outputs.get(r.name)
        if out is None:
            continue
        layer: dict[str, Any] = {"name": r.name, "type": r.type, "shape": list(out.shape[1:]), "spec": None,
                                 "field": None}
        if r.spec:
            layer["spec"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.spec.items()}
        if r.rf is not None and len(r.rf) == 2 and all(f.exact for f in r.rf):
            layer["field"] = [{"size": f.size, "jump": f.jump, "start": f.start} for f in r.rf]
        if out[0].numel() <= budget:
            layer["values"] = out[0].reshape(-1).tolist()
            budget -= out[0].numel()
        else:
            layer["omitted"] = f"{out[0].numel()} values are over this page's limit"
        module = modules[r.name]
        weight = getattr(module, "weight", None)
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and isinstance(weight, torch.Tensor):
            layer["weight_shape"] = list(weight.shape)
            if weight.numel() <= budget:
                layer["weight"] = weight.detach().float().reshape(-1).tolist()
                bias = getattr(module, "bias", None)
                layer["bias"] = bias.detach().float().tolist() if isinstance(bias, torch.Tensor) else None
                budget -= weight.numel()
        layers.append(layer)
    probs = torch.softmax(logits, dim=1)[0]
    return {"input_shape": list(x.shape[1:]), "layers": layers, "logits": logits[0].tolist(),
            "softmax": probs.tolist()}


def page_routes(app: FastAPI, service=None) -> None:
    """``GET /explain`` (the page) and, where models are served, ``POST /v1/walk``."""
    from .app import STATIC_DIR

    @app.get("/explain", include_in_schema=False)
    async def explain_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "explain.html", media_type="text/html")

    if service is None:
        return

    @app.post("/v1/walk", summary="Every layer's activations, weights and receptive field for one image, "
                                  "then the softmax and the classification answer")
    async def walk_route(request: Request) -> JSONResponse:
        from .app import answered, new_log_id, parse_flag, timed_out, within

        start = time.perf_counter()
        service.require_ready()
        config = service.config
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            images, fields = await service.images(request, "image", 1)
            served = service.pick(fields.get("model"))
            image = await service.prepare(images[0], served, parse_flag(fields.get("invert"), "invert"))
            preds = await served.batcher.submit(image, min(5, len(served.class_names)))
            x = served.checkpoint.preprocessing.normalize(image.unsqueeze(0))

            def work():
                import copy

                with served._cam_lock:  # the private copy Grad-CAM uses; the inference thread never touches it
                    if served._cam_model is None:
                        served._cam_model = copy.deepcopy(served.predictor.model).eval()
                    return walk(served._cam_model, x)

            shown = await asyncio.get_running_loop().run_in_executor(service.cam_pool, work)
        pixels = image.permute(1, 2, 0).reshape(-1).tolist()  # H x W x C uint8, the model's view of the image
        return answered(start, served.name, {"classes": served.class_names, "input_pixels": pixels, **shown,
                                             "answer": {"log_id": new_log_id(), **service.answer(served, preds)}})


def playground_app() -> FastAPI:
    """The page alone, without models: the playground works, the model walk says no model is served."""
    from fastapi.staticfiles import StaticFiles

    from .app import STATIC_DIR, Guard

    app = FastAPI(title="cnnlab explainer", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard)

    @app.get("/v1/models", include_in_schema=False)
    async def no_models() -> dict[str, Any]:
        return {"models": []}

    @app.get("/", include_in_schema=False)
    async def root() -> FileResponse:
        return FileResponse(STATIC_DIR / "explain.html", media_type="text/html")

    page_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
