"""Importing hub libraries offline: the hub switches are set before the library is first imported.

``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``/``HF_DATASETS_OFFLINE`` are set (the user's own values
kept), so nothing an encoder, processor or dataset loader opens ever reaches the network; a package
that is missing or does not import raises :class:`ConfigError` naming the pip extra that installs it.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from modalign.errors import ConfigError

_EXTRA_HINTS = {
    "vision": " into an environment whose torch matches its torchvision (bash scripts/setup_vision.sh "
    "creates one: .venv-vision)"
}
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def offline_import(module: str, extra: str = "pretrained", what: str = "this encoder") -> ModuleType:
    """Import a hub library with the offline switches set (the user's own values are kept).

    Raises:
        ConfigError: the package is not installed or does not import (says that ``what`` needs it
            and names the pip extra; a torchvision built for another torch raises RuntimeError).
    """
    for key, value in HUB_OFFLINE.items():
        os.environ.setdefault(key, value)
    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError) as e:
        raise ConfigError(
            f"{what} needs the Python package {module!r}, which does not import here ({e}); "
            f"install it with pip install 'modalign[{extra}]'{_EXTRA_HINTS.get(extra, '')}"
        ) from None
