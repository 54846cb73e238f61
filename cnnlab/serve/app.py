"""The HTTP application: classification API, Grad-CAM views, health checks, docs and the web page.

Answers follow the decks' recognition service: ``{"log_id", "result_num", "result": [{"keyword",
"score", "root"}]}``, plus the model's name and the time taken. Every failure is a JSON
``{"error_code", "error_msg", "log_id"}`` with its HTTP status; no stack trace ever leaves the
server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from html import escape
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.images import ImageTooLarge
from ..errors import CnnlabError
from ..predict import Prediction
from .config import ACCEPTED_FORMATS, ServeConfig
from .errors import (HTTP_CODES, ServeError, bad_request, body_too_large, image_too_large, invalid_image,
                     not_ready, overloaded, timed_out)
from .images import Upload, decode_image, parse_body, parse_int
from .metrics import ServiceMetrics
from .models import ServedModel

log = logging.getLogger("cnnlab.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page and everything it loads come from this server; images it shows are data: or blob: URLs.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; base-uri 'none'; "
                                 b"frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def new_log_id() -> str:
    """A 63-bit random identifier, as a decimal string like the decks' service answers with."""
    return str(secrets.randbits(63))


def floor6(score: float) -> float:
    """Round down to 6 decimals, so the scores of an answer never add up to more than their sum."""
    return math.floor(score * 1e6) / 1e6


def error_body(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "error_msg": message, "log_id": new_log_id()}


class Guard:
    """Plain ASGI middleware: adds :data:`SECURITY_HEADERS` to every response, turns any error that
    escaped the handlers into a JSON 500 (logged here, with its traceback, never sent), and counts every
    request in ``metrics`` (its route, status, latency and, for an error, its ``error_code``)."""

    def __init__(self, app, metrics: ServiceMetrics | None = None):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, begun = False, 500, time.perf_counter()
        error_chunks: list[bytes] = []

        async def send_with_headers(message):
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, int(message["status"])
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
                if self.metrics is not None:
                    route = getattr(scope.get("route"), "path", None) or "other"
                    self.metrics.request(route, scope.get("method", ""), status, time.perf_counter() - begun)
            elif message["type"] == "http.response.body" and status >= 400 and sum(map(len, error_chunks)) < 4096:
                error_chunks.append(message.get("body", b""))  # error bodies are small JSON: read their code
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            body = error_body("internal_error", "internal error; the server log has the details")
            log.exception("internal error (log_id %s) on %s %s", body["log_id"], scope.get("method"), scope.get("path"))
            if not started:
                await JSONResponse(body, status_code=500)(scope, receive, send_with_headers)
        if self.metrics is not None and status >= 400:
            self.metrics.error(_error_code(b"".join(error_chunks), status))


def _error_code(body: bytes, status: int) -> str:
    try:
        code = json.loads(body).get("error_code")
    except (ValueError, AttributeError):
        code = None
    return str(code) if code else HTTP_CODES.get(status, f"http_{status}")


@asynccontextmanager
async def within(seconds: float, error: ServeError) -> AsyncIterator[None]:
    """Raise ``error`` if the block runs longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise error from None


class Service:
    """State shared by the request handlers: the models, limits, readiness and worker pools."""

    def __init__(self, models: dict[str, ServedModel], config: ServeConfig):
        self.models = models
        self.config = config
        self.ready = False
        self.warmup_error: str | None = None
        self.started = time.time()
        self.decode_slots: asyncio.Semaphore | None = None
        self.cam_pool = ThreadPoolExecutor(max_workers=config.cam_workers, thread_name_prefix="cam")
        self.cam_running = 0
        self.metrics = ServiceMetrics()
        for name, model in models.items():
            model.batcher.on_batch = lambda size, name=name: self.metrics.batch(name, size)

    # -- lifecycle
    async def start(self) -> None:
        self.decode_slots = asyncio.Semaphore(self.config.decode_workers)
        for model in self.models.values():
            await model.batcher.start()

    async def warm_up(self) -> None:
        """One inference per model through its batcher; only then is the service ready."""
        try:
            for model in self.models.values():
                await model.batcher.submit(torch.zeros(model.input_size, dtype=torch.uint8), 1)
        except Exception as e:  # a model that cannot run stays not-ready, and says why
            self.warmup_error = f"{type(e).__name__}: {e}"
            log.error("warm-up failed: %s", self.warmup_error)
            return
        self.ready = True
        log.info("ready: %s", ", ".join(self.models))

    async def stop(self) -> None:
        self.ready = False
        for model in self.models.values():
            await model.batcher.stop(self.config.graceful_shutdown_s)
        self.cam_pool.shutdown(wait=False, cancel_futures=True)

    # -- request helpers
    def require_ready(self) -> None:
        if not self.ready:
            raise not_ready()

    def pick(self, name: str | None, task: str = "classify") -> ServedModel:
        """The model ``name`` (by default the first one doing ``task``), which must do ``task``."""
        if not name:
            chosen = next((m for m in self.models.values() if m.checkpoint.task == task), None)
            if chosen is None:
                raise bad_request(f"no model served here does {task}; the models do "
                                  f"{', '.join(sorted({m.checkpoint.task for m in self.models.values()}))}")
            return chosen
        if name not in self.models:
            raise ServeError(404, "unknown_model", f"no model '{name}' is served; known: {', '.join(self.models)}")
        model = self.models[name]
        if model.checkpoint.task != task:
            raise bad_request(f"model '{name}' does {model.checkpoint.task}, not {task}")
        return model

    async def read_body(self, request: Request) -> bytes:
        """The whole body, refusing (413) before reading when it declares too many bytes, and while
        reading when it sends them anyway; 408 if the sender is too slow."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise bad_request("Content-Length is not a number") from None
            if too_big:
                raise body_too_large(limit)
        chunks, size = [], 0
        slow = ServeError(408, "request_timeout", f"the body took longer than {self.config.body_timeout_s:g} s to arrive")
        async with within(self.config.body_timeout_s, slow):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise body_too_large(limit)
                chunks.append(chunk)
        return b"".join(chunks)

    async def upload(self, request: Request, image_field: str) -> tuple[Upload, dict[str, str]]:
        body = await self.read_body(request)
        # Parsing (JSON, base64, multipart: up to the body limit) runs off the event loop, like decoding.
        upload = await asyncio.to_thread(parse_body, body, request.headers.get("content-type", ""),
                                         image_field=image_field)
        fields = dict(request.query_params)
        fields.update(upload.fields)
        return upload, fields

    async def images(self, request: Request, field: str, count: int, hint: str = "") -> tuple[list[bytes], dict[str, str]]:
        """The request's images, exactly ``count`` of them (else a 400 saying how many came), and its fields."""
        upload, fields = await self.upload(request, field)
        if len(upload.images) != count:
            wanted = {1: "one image", 2: "two images"}.get(count, f"{count} images")
            raise bad_request(f"send exactly {wanted} (got {len(upload.images)}){hint}")
        return upload.images, fields

    async def prepare(self, data: bytes, model: ServedModel, invert: bool | None, index: int | None = None) -> torch.Tensor:
        """Decode (in a worker thread, a few at a time) and shape one image for ``model``."""
        return (await self.prepare_view(data, model, invert, index)).tensor

    async def prepare_view(self, data: bytes, model: ServedModel, invert: bool | None, index: int | None = None):
        """As :meth:`prepare`, with what was done to the image and what looks unusual about it
        (:class:`~cnnlab.train.meta.InputView`)."""

        def work():
            image = decode_image(data, max_pixels=self.config.max_pixels, max_aspect=self.config.max_aspect_ratio,
                                 index=index)
            try:
                return model.checkpoint.preprocessing.view(image, invert=invert)
            except ImageTooLarge as e:
                raise image_too_large(str(e)) from None
            except CnnlabError as e:  # a Pillow mode that cannot become the model's channels, say
                raise invalid_image(f"{'image' if index is None else f'image {index}'}: {e}") from None

        with model.batcher.announce():
            async with self.decode_slots:
                return await asyncio.to_thread(work)

    def answer(self, model: ServedModel, preds: list[Prediction]) -> dict[str, Any]:
        return {"result_num": len(preds),
                "result": [{"keyword": p.label, "score": floor6(p.score), "root": model.roots[p.index],
                            "index": p.index} for p in preds]}


def parse_flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise bad_request(f"{name} must be true or false, got '{value}'")


def common_options(model: ServedModel, fields: dict[str, str], config: ServeConfig) -> tuple[int, bool | None]:
    n = len(model.class_names)
    top_k = parse_int(fields.get("top_k"), "top_k", 1, n, min(config.default_top_k, n))
    return top_k, parse_flag(fields.get("invert"), "invert")


# --- request body descriptions for the OpenAPI document (the handlers parse bodies themselves) -------

def _body_doc(image_field: str, many: bool) -> dict[str, Any]:
    file_schema = {"type": "string", "format": "binary"}
    b64 = {"type": "string", "format": "byte", "description": "base64 image (a data: URL prefix is allowed)"}
    fields = {"top_k": {"type": "integer", "minimum": 1}, "model": {"type": "string"},
              "invert": {"type": "boolean"}}
    if image_field == "cam":
        image_field = "image"
        fields = {"model": {"type": "string"}, "class_index": {"type": "integer"}, "invert": {"type": "boolean"}}
    part = {"type": "array", "items": file_schema} if many else file_schema
    b64_part = {"type": "array", "items": b64} if many else b64
    content = {
        "multipart/form-data": {"schema": {"type": "object", "required": [image_field],
                                           "properties": {image_field: part, **fields}}},
        "application/json": {"schema": {"type": "object", "required": [image_field],
                                        "properties": {image_field: b64_part, **fields}}},
    }
    if not many:
        content["image/*"] = {"schema": file_schema}
    return {"requestBody": {"required": True, "content": content}}


ERROR_RESPONSES = {
    status: {"description": text, "content": {"application/json": {"example": {
        "error_code": code, "error_msg": "...", "log_id": "7275343294157017980"}}}}
    for status, code, text in [
        (400, "invalid_image", "bad image or argument"), (404, "unknown_model", "no such model"),
        (408, "request_timeout", "body too slow"), (413, "image_too_large", "body or image too large"),
        (415, "unsupported_media_type", "wrong content type"),
        (503, "overloaded", "queue full or not ready (see Retry-After)"), (504, "timeout", "request too slow"),
    ]
}


def create_app(models: dict[str, ServedModel], config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``models`` (see :func:`cnnlab.serve.models.load_models`)."""
    config = config or ServeConfig()
    service = Service(models, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        warm = asyncio.create_task(service.warm_up())
        try:
            yield
        finally:
            # Uvicorn reaches this after the requests in flight have finished (or its grace period).
            warm.cancel()
            await service.stop()

    app = FastAPI(title="cnnlab image classification", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Classify images with cnnlab checkpoints. Errors are JSON "
                              "`{error_code, error_msg, log_id}`. Accepted formats: " + ", ".join(ACCEPTED_FORMATS))
    app.state.service = service
    app.add_middleware(Guard, metrics=service.metrics)

    # -- errors: always JSON, never a traceback
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError) -> JSONResponse:
        return JSONResponse(error_body(e.code, e.message), status_code=e.status, headers=e.headers())

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(request: Request, e: CnnlabError) -> JSONResponse:
        return JSONResponse(error_body("invalid_argument", str(e).splitlines()[0] if str(e) else type(e).__name__),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(HTTP_CODES.get(e.status_code, "http_error"), str(e.detail)),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse(error_body("invalid_argument", f"{where}: {first.get('msg', 'invalid request')}"),
                            status_code=400)

    # -- health
    @app.get("/metrics", summary="Counters in the Prometheus text format: requests, latency, batches, queue, errors")
    async def metrics() -> Response:
        depths = {name: m.batcher.pending for name, m in models.items()}
        return Response(service.metrics.render(depths), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/livez", summary="Liveness: the process answers")
    async def livez() -> dict[str, Any]:
        return {"status": "alive", "uptime_s": round(time.time() - service.started, 3)}

    @app.get("/readyz", summary="Readiness: models loaded and warmed up", responses={503: ERROR_RESPONSES[503]})
    async def readyz() -> JSONResponse:
        if not service.ready:
            msg = f"warm-up failed: {service.warmup_error}" if service.warmup_error else "models are still warming up"
            return JSONResponse(error_body("not_ready", msg), status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "models": list(models)})

    # -- models
    @app.get("/v1/models", summary="The models served, with their classes, input size and accuracy")
    async def list_models() -> dict[str, Any]:
        return {"models": [m.info() for m in models.values()]}

    # -- classification
    @app.post("/v1/classify", summary="Top-k classes of one image", openapi_extra=_body_doc("image", False),
              responses=ERROR_RESPONSES)
    async def classify(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            images, fields = await service.images(request, "image", 1, "; use /v1/classify/batch for several")
            model = service.pick(fields.get("model"))
            top_k, invert = common_options(model, fields, config)
            view = await service.prepare_view(images[0], model, invert)
            preds = await model.batcher.submit(view.tensor, top_k)
        return answered(start, model.name, {**service.answer(model, preds), "inverted": view.inverted,
                                            "warnings": view.notes})

    @app.post("/v1/classify/batch", summary="Top-k classes of several images",
              openapi_extra=_body_doc("images", True), responses=ERROR_RESPONSES)
    async def classify_batch(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            upload, fields = await service.upload(request, "images")
            if not 1 <= len(upload.images) <= config.max_batch_images:
                raise bad_request(f"send between 1 and {config.max_batch_images} images (got {len(upload.images)})")
            model = service.pick(fields.get("model"))
            top_k, invert = common_options(model, fields, config)

            async def one(index: int, data: bytes) -> dict[str, Any]:
                # Each image succeeds or fails on its own; a bad one does not sink the others.
                try:
                    view = await service.prepare_view(data, model, invert, index=index)
                    return {**service.answer(model, await model.batcher.submit(view.tensor, top_k)),
                            "inverted": view.inverted, "warnings": view.notes}
                except ServeError as e:
                    return {"error_code": e.code, "error_msg": e.message}
                except Exception:  # a bug shows in this image's answer and the log, not in the others'
                    body = error_body("internal_error", "internal error; the server log has the details")
                    log.exception("internal error (log_id %s) on image %d of a batch", body["log_id"], index)
                    return {"error_code": body["error_code"], "error_msg": body["error_msg"]}

            results = await asyncio.gather(*(one(i, d) for i, d in enumerate(upload.images)))
        return JSONResponse({"log_id": new_log_id(), "model": model.name, "image_num": len(results),
                             "results": results, "time_ms": round((time.perf_counter() - start) * 1000, 2)})

    async def cam(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            images, fields = await service.images(request, "image", 1)
            model = service.pick(fields.get("model"))
            n = len(model.class_names)
            class_index = fields.get("class_index")
            class_index = None if class_index in (None, "") else parse_int(class_index, "class_index", 0, n - 1, 0)
            image = await service.prepare(images[0], model, parse_flag(fields.get("invert"), "invert"))
            if service.cam_running >= config.cam_workers * 4:
                raise overloaded("the Grad-CAM queue")
            service.cam_running += 1
            try:
                loop = asyncio.get_running_loop()
                shown = await loop.run_in_executor(service.cam_pool, model.cam, image, class_index)
            finally:
                service.cam_running -= 1
        index = shown["class_index"]
        return answered(start, model.name, {"keyword": model.class_names[index], "root": model.roots[index], **shown})

    app.post("/v1/cam", summary="Input as the model sees it, feature maps and Grad-CAM overlay",
             openapi_extra=_body_doc("cam", False), responses=ERROR_RESPONSES)(cam)

    @app.post("/v1/explain", summary="Deprecated name of POST /v1/cam (answers the same; removed in the next release)",
              openapi_extra=_body_doc("cam", False), responses=ERROR_RESPONSES, deprecated=True)
    async def cam_by_its_old_name(request: Request) -> JSONResponse:
        response = await cam(request)
        response.headers["deprecation"] = "true"
        response.headers["link"] = '</v1/cam>; rel="successor-version"'
        return response

    # -- every other task's endpoint: POST /v1/<task.endpoint>, answered by the task
    for task in _served_tasks(models):
        if task.endpoint:
            app.post(f"/v1/{task.endpoint}", summary=task.description, openapi_extra=_body_doc("image", False),
                     responses=ERROR_RESPONSES, name=f"task_{task.name}")(_task_handler(service, task))
        task.add_routes(app, service)  # a task's own endpoints (two images, clips, no image at all ...)

    # -- documentation that works offline (the usual Swagger page loads its script from a CDN)
    # Swagger UI from the fastapi-offline package (no CDN); without it, a plain list of the operations.
    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/swagger", StaticFiles(directory=swagger), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger is not None:
            return HTMLResponse(SWAGGER_PAGE)
        return HTMLResponse(render_docs(app.openapi()))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    # -- the web page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    from .explainer import page_routes

    page_routes(app, service)  # GET /explain: the convolution playground and the walk through a model
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def answered(start: float, model_name: str, body: dict[str, Any]) -> JSONResponse:
    """A route's answer: a fresh log id, the model's name, ``body`` and the time since ``start``."""
    return JSONResponse({"log_id": new_log_id(), "model": model_name, **body,
                         "time_ms": round((time.perf_counter() - start) * 1000, 2)})


def _served_tasks(models: dict[str, ServedModel]) -> list:
    """The tasks (other than classification, whose routes are above) of the models served."""
    from ..tasks import get_task

    names = sorted({m.checkpoint.task for m in models.values()} - {"classify"})
    return [get_task(n) for n in names]


def _task_handler(service: Service, task):
    """The handler of ``POST /v1/<task.endpoint>``: one image, through the model's micro-batcher, the
    answer shaped by the task; same limits and errors as classification."""
    config = service.config

    async def handle(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            images, fields = await service.images(request, "image", 1)
            model = service.pick(fields.get("model"), task.name)
            options = task.request_options(fields, model)
            image = await service.prepare(images[0], model, parse_flag(fields.get("invert"), "invert"))
            prediction = await model.batcher.submit(image, 1)
        return answered(start, model.name, task.response(model, prediction, options))

    return handle


# The interactive API page: Swagger UI's own files, started by a script of ours (the page allows no
# inline scripts).
SWAGGER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnlab API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/favicon.svg"><link rel="stylesheet" href="/swagger/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script></body></html>"""


def _swagger_assets() -> str | None:
    """The folder of Swagger UI's files, as the fastapi-offline package vendors them (Swagger UI 5, which
    reads OpenAPI 3.1), or None where that package is not installed."""
    try:
        import importlib.resources

        path = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except (ImportError, ModuleNotFoundError):
        return None
    return str(path) if (path / "swagger-ui-bundle.js").is_file() and (path / "swagger-ui.css").is_file() else None


def render_docs(spec: dict[str, Any]) -> str:
    """A plain HTML page listing the OpenAPI document's operations (no scripts, no external assets)."""
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            bodies = ", ".join((op.get("requestBody") or {}).get("content", {}))
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(f"<section><h2><code>{escape(method.upper())} {escape(path)}</code></h2>"
                        f"<p>{escape(op.get('summary', ''))}</p>"
                        + (f"<p>Body: <code>{escape(bodies)}</code></p>" if bodies else "")
                        + f"<p>Statuses: {escape(codes)}</p></section>")
    info = spec.get("info", {})
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>API: "
            f"{escape(info.get('title', ''))}</title><link rel='stylesheet' href='/static/style.css'></head>"
            f"<body class='docs'><h1>{escape(info.get('title', ''))}</h1><p>{escape(info.get('description', ''))}</p>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> &middot; "
            "<a href='/'>web page</a></p>" + "".join(rows) + "</body></html>")


def build_app(checkpoints: Sequence[str], config: ServeConfig | None = None, *, device: str = "cpu") -> FastAPI:
    """Load ``checkpoints`` (``PATH`` or ``NAME=PATH``) and return the application serving them."""
    from .models import load_models

    config = config or ServeConfig()
    return create_app(load_models(checkpoints, config, device=device), config)
