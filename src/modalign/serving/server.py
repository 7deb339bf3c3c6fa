"""serve: open an index and a model, then run the service under uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from modalign.errors import ConfigError
from modalign.serving.app import create_app
from modalign.serving.settings import ServeSettings

API_KEY_ENV = "MODALIGN_API_KEY"


def api_key_from(option: str | None) -> str | None:
    """The API key: the option when given, else ``$MODALIGN_API_KEY``, else None (no key)."""
    if option is not None:
        return option
    return os.environ.get(API_KEY_ENV) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(index_dir: str | Path, model_dir: str | Path | None, settings: ServeSettings) -> Any:
    """Open the index and the model (default: the one that embedded the index) and create the app.

    Raises:
        IndexStoreError, CheckpointError: a damaged index or model; ConfigError: no model known.
    """
    from modalign.model import load
    from modalign.search import Index

    index = Index.open(index_dir)
    if model_dir is None:
        model_dir = index.info.get("model_dir")
        if not isinstance(model_dir, str):
            raise ConfigError(f"the index at {index_dir} does not name its model: pass --model MODEL_DIR")
    model = load(model_dir)
    return create_app(index, model, settings)


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, max_concurrency: int = 256) -> None:
    """Run ``app`` until interrupted (uvicorn, one process, no reload, no proxy headers).

    Beyond ``max_concurrency`` open connections and requests, new ones get 503, which bounds the
    memory that many concurrent uploads can hold.
    """
    import uvicorn

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=max_concurrency,
        log_level="info",
    )
