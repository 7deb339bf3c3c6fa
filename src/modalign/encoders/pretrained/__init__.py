"""Adapters of pretrained encoders (registered on import; their heavy libraries load lazily).

Importing this package imports only torch and modalign: ``transformers``, ``timm``, ``open_clip``
and the model packages are imported when an encoder is built, with the hub offline switches set.
"""

from __future__ import annotations

from modalign.encoders.pretrained import (  # noqa: F401
    efficientnet,
    hf_text,
    hf_vision,
    openclip,
    timm_models,
    torchscript,
)
