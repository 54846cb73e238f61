"""The service's metric-learning endpoints (added by the metric task's ``add_routes``):

* ``POST /v1/search``: one image -> the ``top_k`` nearest images of the model's index (``$CNNLAB_INDEX``
  or ``index.safetensors`` in the run folder; 409 when there is none), with distances;
* ``POST /v1/verify``: two images (``images``: a list of two, or two ``images`` parts) -> distance,
  the threshold and whether they are the same (distance below the threshold; by default the equal
  error rate's, as the checkpoint's evaluation recorded it).

Both go through the service's body limits, decoding, model batcher and error answers.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from fastapi.responses import JSONResponse

from ..serve.errors import ServeError, bad_request


def _number(fields: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    text = fields.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"{name} must be a number, got '{text}'") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise bad_request(f"{name} must be between {low:g} and {high:g}, got {text}")
    return value


def default_threshold(checkpoint) -> float:
    """The distance threshold of the equal error rate on the unseen classes (cosine c -> sqrt(2 - 2c))."""
    cosine = (checkpoint.meta.metrics or {}).get("eer_threshold")
    return math.sqrt(max(0.0, 2 - 2 * float(cosine))) if cosine is not None else 1.0


def add_metric_routes(app, service, task) -> None:
    from ..serve.app import ERROR_RESPONSES, _body_doc, answered, parse_flag, timed_out, within

    config = service.config

    async def search(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            images, fields = await service.images(request, "image", 1)
            model = service.pick(fields.get("model"), task.name)
            k = int(_number(fields, "top_k", 5, 1, 100))
            if model.predictor.index is None:
                raise ServeError(409, "no_index", f"model '{model.name}' has no index to search: build one with "
                                 "'cnnlab index build' and serve with CNNLAB_INDEX=INDEX")
            image = await service.prepare(images[0], model, parse_flag(fields.get("invert"), "invert"))
            prediction = await model.batcher.submit(image, k)
        return answered(start, model.name, {"index_size": len(model.predictor.index),
                                            "result": task.describe(prediction).get("neighbours", [])})

    async def verify(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            uploaded, fields = await service.images(request, "images", 2)
            model = service.pick(fields.get("model"), task.name)
            threshold = _number(fields, "threshold", default_threshold(model.checkpoint), 0.0, 2.0)
            invert = parse_flag(fields.get("invert"), "invert")
            images = [await service.prepare(data, model, invert, index=i) for i, data in enumerate(uploaded)]
            first, second = [await model.batcher.submit(image, 1) for image in images]
        distance = float((first["embedding"] - second["embedding"]).norm())
        return answered(start, model.name, {"distance": round(distance, 6), "threshold": round(threshold, 6),
                                            "same": distance <= threshold})

    app.post("/v1/search", summary="Nearest indexed images of an image (metric learning)",
             openapi_extra=_body_doc("image", False), responses=ERROR_RESPONSES)(search)
    app.post("/v1/verify", summary="Are two images of one class? Distance of their embeddings and a threshold",
             openapi_extra=_body_doc("images", True), responses=ERROR_RESPONSES)(verify)
