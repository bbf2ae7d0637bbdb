"""Adapter layer: the inference server, a multi-version embedding server with dynamic batching.

`create_app` builds the ASGI app from its route groups (`http_front/`); `runner.run` serves it (one
or several worker processes); `canaryflow serve` is the command line.
"""

from inference.http_front.assembly import create_app
from inference.server_settings import InferenceSettings

__all__ = ["InferenceSettings", "create_app"]
