"""Serving checkpoints over HTTP: a JSON classification API with micro-batching, and a web page.

>>> from cnnlab.serve import ServeConfig, build_app, run_server
>>> run_server(["runs/lenet5"], ServeConfig(port=8000))        # doctest: +SKIP

See ``docs/serve.md`` for the API and its limits.
"""

from .app import build_app, create_app
from .batcher import MicroBatcher
from .config import ACCEPTED_FORMATS, ServeConfig
from .errors import ServeError
from .models import ServedModel, load_models
from .server import BackgroundServer, run_server
from .taxonomy import class_roots

__all__ = ["ACCEPTED_FORMATS", "BackgroundServer", "MicroBatcher", "ServeConfig", "ServeError", "ServedModel",
           "build_app", "class_roots", "create_app", "load_models", "run_server"]
