"""Importing a hub library (transformers, peft, datasets) offline.

The hub switches (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``) are set
before the library is first imported (the user's own values are kept), so nothing modalign loads
ever reaches the network.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from modalign.errors import ConfigError

HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def offline_import(module: str, extra: str = "pretrained", what: str = "this encoder") -> ModuleType:
    """Import a hub library with the offline switches set.

    Raises:
        ConfigError: the package is not installed (names ``what`` needs it and the pip extra).
    """
    for key, value in HUB_OFFLINE.items():
        os.environ.setdefault(key, value)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"{what} needs the Python package {module!r} ({e}); install it with "
            f"pip install 'modalign[{extra}]'"
        ) from None
