"""ServeSettings: the limits and switches of the HTTP service, all with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from modalign.errors import ConfigError


@dataclass(frozen=True)
class ServeSettings:
    """Limits of ``modalign serve``; every default is the safe choice.

    Attributes:
        api_key: when set, every route but ``/health`` and the page's static files needs header
            ``X-API-Key`` equal to it (constant-time comparison), else 401.
        max_body_bytes: request body cap (Content-Length and streamed size), else 413.
        max_image_pixels: width x height cap of an uploaded image, checked before decoding.
        max_audio_seconds: length cap of an uploaded audio clip, checked before decoding.
        max_text_chars: length cap of a text query.
        max_k: the largest ``k`` a client may ask for.
        timeout_s: a request still running after this many seconds answers 504.
        cors_origins: origins allowed cross-origin access; empty = no CORS headers at all.
        batch_wait_ms: how long the micro-batcher waits for more queries after the first one.
        max_batch: queries per encode call (1 = no micro-batching).
    """

    api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    max_audio_seconds: float = 60.0
    max_text_chars: int = 2_000
    max_k: int = 1_000
    timeout_s: float = 30.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    batch_wait_ms: float = 2.0
    max_batch: int = 64

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key:
            raise ConfigError("the API key must not be empty (leave it unset to serve without one)")
        for name in ("max_body_bytes", "max_image_pixels", "max_text_chars", "max_k", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve setting {name} must be a whole number >= 1, got {value!r}")
        for name in ("max_audio_seconds", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"serve setting {name} must be > 0, got {getattr(self, name)!r}")
        if not self.batch_wait_ms >= 0:
            raise ConfigError(f"serve setting batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}")
        if "*" in self.cors_origins:
            raise ConfigError("CORS origin '*' is refused: list the origins that may call the service")
