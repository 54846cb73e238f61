"""The service's clip endpoint (added by the video task's ``add_routes``):

``POST /v1/classify-clip``: one clip, an animated GIF (multipart ``clip`` or ``image`` part, or the
service's JSON / base64 body) -> the class, every class's probability and the ``top_k`` classes. A GIF
of one frame, or bytes that are no GIF, get a 400 with one line saying why. It goes through the
service's body limits, model batcher and error answers.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import CnnlabError
from .errors import bad_request


def add_clip_routes(app, service, task) -> None:
    from ..tasks.video import clip_from_upload
    from .app import ERROR_RESPONSES, _body_doc, answered, timed_out, within

    config = service.config

    async def classify_clip(request: Request) -> JSONResponse:
        start = time.perf_counter()
        service.require_ready()
        async with within(config.request_timeout_s, timed_out(config.request_timeout_s)):
            upload, fields = await service.upload(request, "clip")  # a "clip", "image" or "file" part
            if len(upload.images) != 1:
                raise bad_request(f"send exactly one clip, an animated GIF (got {len(upload.images)})")
            model = service.pick(fields.get("model"), task.name)
            options = task.request_options(fields, model)

            def decode():
                try:
                    return clip_from_upload(upload.images[0], model.input_size)
                except CnnlabError as err:
                    raise bad_request(str(err)) from None

            with model.batcher.announce():
                async with service.decode_slots:
                    clip = await asyncio.to_thread(decode)
            prediction = await model.batcher.submit(clip, 1)
        return answered(start, model.name, task.response(model, prediction, options))

    app.post("/v1/classify-clip", summary="The class of a clip (an animated GIF) and every class's probability",
             openapi_extra=_body_doc("image", False), responses=ERROR_RESPONSES)(classify_clip)
