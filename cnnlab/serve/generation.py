"""``POST /v1/generate`` (added by the generate task's ``add_routes``): samples of a served GAN.

The body is JSON (or the query string): ``n`` (1-64, default 16), ``class`` (a class name or index,
class-conditional GANs only), ``seed`` (default 0: the same seed gives the same images),
``interpolate`` (true: ``n`` rows of ``steps`` images walking between two latents) and ``model``. The
answer holds the grid as a base64 PNG and each image's class.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import ConfigError
from .errors import bad_request

MAX_IMAGES = 64


def _int(fields: dict, name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be a whole number, got '{value}'") from None
    if not low <= number <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {number}")
    return number


def png_base64(image) -> str:
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def add_generation_routes(app, service, task) -> None:
    from ..generation import image_grid
    from .app import ERROR_RESPONSES, new_log_id, parse_flag, timed_out, within

    config = service.config
    lock = asyncio.Lock()  # one generation at a time per process: the model is shared

    @app.post("/v1/generate", summary="samples of a served GAN (grid as base64 PNG)", responses=ERROR_RESPONSES,
              name="task_generate")
    async def generate(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            body = await service.read_body(request)
            fields = dict(request.query_params)
            if body.strip():
                try:
                    parsed = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise bad_request("the body must be a JSON object such as {\"n\": 16}") from None
                if not isinstance(parsed, dict):
                    raise bad_request("the body must be a JSON object such as {\"n\": 16}")
                fields.update(parsed)
            model = service.pick(fields.get("model"), task.name)
            n = _int(fields, "n", 16, 1, MAX_IMAGES)
            seed = _int(fields, "seed", 0, 0, 2 ** 31 - 1)
            interpolate = parse_flag(None if fields.get("interpolate") is None else str(fields.get("interpolate")),
                                     "interpolate")
            steps = _int(fields, "steps", 8, 2, 16)
            name = fields.get("class")
            predictor = model.predictor

            def work():
                if interpolate:
                    images = predictor.interpolate(min(n, MAX_IMAGES // steps or 1), steps, seed=seed, class_name=name)
                    return images, None, steps
                images, classes = predictor.sample(n, seed=seed, class_name=name)
                return images, classes, None

            async with lock:
                try:
                    images, classes, columns = await asyncio.to_thread(work)
                except ConfigError as e:
                    raise bad_request(str(e)) from None
        names = predictor.class_names
        return JSONResponse({
            "log_id": new_log_id(), "model": model.name, "n": len(images), "seed": seed,
            "classes": [names[int(k)] for k in classes] if classes is not None else None,
            "image_size": list(images.shape[1:]), "grid_png": png_base64(image_grid(images, columns=columns)),
            "time_ms": round((time.perf_counter() - start) * 1000, 2)})
