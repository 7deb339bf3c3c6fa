"""Schemathesis against the service's OpenAPI schema: generated and mutated requests never get a 5xx.

Both positive (schema-valid) and negative (schema-violating) cases, a few per operation, derandomized
so the run is the same every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from serve_fixtures import shared_served  # noqa: E402

from modalign.serving import ServeSettings, create_app  # noqa: E402

EXAMPLES = 10


@pytest.fixture(scope="module")
def api_schema(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    served = shared_served(dataset, tmp_path_factory)
    app = create_app(served.index, served.model, ServeSettings(max_body_bytes=64 * 1024, timeout_s=20))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(api_schema: Any, mode: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {
        "POST /search",
        "POST /embed",
        "GET /items/{item_id}/media",
        "GET /items/{item_id}/similar",
    } <= labels
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
        )
        def check(case: Any) -> None:
            response = case.call()
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text[:300],
            )
            if response.status_code >= 400:  # every error is a JSON body with a message
                assert response.json()["detail"]

        try:
            check()
        except Unsatisfiable:  # nothing to violate (no body, only free-form strings): positive cases only
            assert mode == GenerationMode.NEGATIVE and operation.method == "get", operation.label
    assert sum(seen.values()) >= 2 * EXAMPLES
    if mode == GenerationMode.POSITIVE:
        assert seen.get(200, 0) > 0, seen  # valid requests do get answers
    else:
        assert any(400 <= s < 500 for s in seen), seen
