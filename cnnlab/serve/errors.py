"""The service's error answers: every failure is ``{"error_code", "error_msg"}`` with its HTTP status.

``error_code`` is a short stable word a client can branch on; ``error_msg`` is one line for people.
"""

from __future__ import annotations

from ..errors import CnnlabError


class ServeError(CnnlabError):
    """A request the service refuses, with the HTTP status and code to answer it with."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_request(message: str) -> ServeError:
    return ServeError(400, "invalid_argument", message)


def invalid_image(message: str) -> ServeError:
    return ServeError(400, "invalid_image", message)


def image_too_large(message: str) -> ServeError:
    return ServeError(413, "image_too_large", message)


def body_too_large(limit: int) -> ServeError:
    return ServeError(413, "body_too_large", f"request body is larger than the {limit} bytes allowed")


def unsupported_media_type(content_type: str) -> ServeError:
    shown = content_type or "none"
    return ServeError(415, "unsupported_media_type",
                      f"content type '{shown}' is not accepted; send multipart/form-data, application/json "
                      "(base64 image) or an image/* body")


def overloaded(what: str) -> ServeError:
    return ServeError(503, "overloaded", f"{what} is full; try again shortly", retry_after=1)


def not_ready() -> ServeError:
    return ServeError(503, "not_ready", "models are still warming up", retry_after=1)


def timed_out(seconds: float) -> ServeError:
    return ServeError(504, "timeout", f"the request took longer than {seconds:g} s")


# Status -> code for errors raised by the web framework itself (unknown path, wrong method, ...).
HTTP_CODES = {
    400: "invalid_argument", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
    413: "body_too_large", 415: "unsupported_media_type", 422: "invalid_argument", 500: "internal_error",
    501: "not_implemented", 503: "unavailable", 504: "timeout",
}
