"""The HTTP service: results equal a brute-force search, media stays under the corpus root, guards hold."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from serve_fixtures import Served, assert_brute_force_results, shared_served

from modalign.serving import ServeSettings, create_app

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def served(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Served:
    return shared_served(dataset, tmp_path_factory)


def client_for(served: Served, **settings: Any) -> TestClient:
    return TestClient(create_app(served.index, served.model, ServeSettings(**settings)))


@pytest.fixture(scope="module")
def client(served: Served) -> Any:
    with client_for(served) as c:
        yield c


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["results"]]


def png_bytes(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).save(buf, format="PNG")
    return buf.getvalue()


def test_text_search_equals_brute_force_over_the_indexed_vectors(served: Served, client: TestClient) -> None:
    query = served.model.encode(["a circle"], "text")[0]
    r = client.post("/search", json={"text": "a circle", "k": 7})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert_brute_force_results(results, served, query, 7)
    assert results[0]["metadata"] == served.metadata[served.ids.index(results[0]["id"])]


@pytest.mark.parametrize(
    "filt, keep",
    [
        ({"split": "test"}, lambda m: m["split"] == "test"),
        ({"label": [1, 3]}, lambda m: m["label"] in (1, 3)),
        ({"label": {"gte": 2}, "split": "train"}, lambda m: m["label"] >= 2 and m["split"] == "train"),
    ],
)
def test_filtered_search_equals_brute_force_among_matching_items(
    served: Served, client: TestClient, filt: dict[str, Any], keep: Any
) -> None:
    query = served.model.encode(["a square"], "text")[0]
    allowed = np.array([keep(m) for m in served.metadata])
    r = client.post("/search", json={"text": "a square", "k": 5, "filter": filt})
    assert r.status_code == 200, r.text
    assert_brute_force_results(r.json()["results"], served, query, 5, allowed)


def test_image_upload_finds_the_same_image_first(served: Served, client: TestClient) -> None:
    row = 1  # the lowest row of its shape, so it also wins exact ties (lower row first)
    data = png_bytes(served.root / served.metadata[row]["image"])
    r = client.post("/search", files={"image": ("q.png", data, "image/png")}, data={"k": "4"})
    query = served.model.encode([Image.open(io.BytesIO(data))], "image")[0]
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert_brute_force_results(results, served, query, 4)
    # the image itself scores 1 (other images of its shape may tie with it under this untrained model)
    own = [h["score"] for h in results if h["id"] == served.ids[row]]
    assert own == [pytest.approx(1.0, abs=1e-5)] and results[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_audio_upload_search_equals_brute_force(served: Served, client: TestClient) -> None:
    path = served.root / "audio" / "3.wav"
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    r = client.post("/search", files={"audio": ("q.wav", path.read_bytes(), "audio/wav")})
    query = served.model.encode([(samples, rate)], "audio")[0]
    assert r.status_code == 200, r.text
    assert_brute_force_results(r.json()["results"], served, query, 10)


def test_embed_returns_the_models_embedding(served: Served, client: TestClient) -> None:
    r = client.post("/embed", json={"text": "a cross"})
    assert r.status_code == 200, r.text
    assert r.json()["modality"] == "text"
    np.testing.assert_allclose(r.json()["embedding"], served.model.encode(["a cross"], "text")[0], atol=1e-6)


def test_items_metadata_media_and_similar(served: Served, client: TestClient) -> None:
    item = served.ids[5]
    assert client.get(f"/items/{item}").json() == {"id": item, "metadata": served.metadata[5]}
    media = client.get(f"/items/{item}/media")
    assert media.status_code == 200
    assert media.content == (served.root / served.metadata[5]["image"]).read_bytes()
    assert media.headers["content-type"] == "image/png"
    similar = client.get(f"/items/{item}/similar", params={"k": 4, "filter": '{"split": "train"}'})
    assert similar.status_code == 200, similar.text
    train = np.array([m["split"] == "train" for m in served.metadata])
    assert_brute_force_results(similar.json()["results"], served, served.vectors[5], 4, train, exclude=5)
    assert client.get("/items/nope").status_code == 404
    assert client.get("/items/nope/similar").status_code == 404
    info = client.get("/info").json()
    assert info["items"] == len(served.ids) and info["kind"] == "image" and info["media"] is True


def test_media_never_leaves_the_corpus_root(served: Served, tmp_path: Path) -> None:
    from modalign.search import Index

    root = tmp_path / "corpus"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.png").write_bytes(b"fine")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (root / "images" / "link.png").symlink_to(secret)  # a symlink inside the root pointing out
    paths = [
        "images/ok.png",
        "../secret.txt",
        str(secret),
        "images/../../secret.txt",
        "images/link.png",
        "images/none.png",
    ]
    ids = [f"i{k}" for k in range(len(paths))]
    vectors = (
        np.random.default_rng(0).standard_normal((len(paths), served.model.embed_dim)).astype(np.float32)
    )
    info = {"modality": "image", "corpus_root": str(root), "media_column": "image"}
    index = Index.build(tmp_path / "idx", vectors, ids, [{"image": p} for p in paths], info=info)
    with TestClient(create_app(index, served.model)) as c:
        assert c.get("/items/i0/media").content == b"fine"
        for item in ids[1:]:
            r = c.get(f"/items/{item}/media")
            assert r.status_code == 404, (item, r.text)
            assert "do not serve" not in r.text
        for url in ("/items/..%2F..%2Fsecret.txt/media", "/items/%2E%2E/media", "/static/../../secret.txt"):
            assert c.get(url).status_code == 404


def test_untrusted_corpus_files_never_run_as_pages(served: Served, tmp_path: Path) -> None:
    from modalign.search import Index

    root = tmp_path / "corpus"
    root.mkdir()
    files = {
        "page.html": b"<script>alert(1)</script>",
        "icon.svg": b"<svg onload='alert(1)'/>",
        "a.png": b"png",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    vectors = np.eye(3, served.model.embed_dim, dtype=np.float32)
    info = {"modality": "image", "corpus_root": str(root), "media_column": "file"}
    index = Index.build(tmp_path / "idx", vectors, list(files), [{"file": n} for n in files], info=info)
    with TestClient(create_app(index, served.model)) as c:
        for name in ("page.html", "icon.svg"):
            r = c.get(f"/items/{name}/media")
            assert r.status_code == 200 and r.content == files[name]
            assert r.headers["content-type"] == "application/octet-stream"
            assert r.headers["content-disposition"].startswith("attachment")
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in r.headers["content-security-policy"]
        png = c.get("/items/a.png/media")
        assert png.headers["content-type"] == "image/png" and "content-disposition" not in png.headers
        page = c.get("/")
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_api_key_is_required_except_for_health_and_the_page(served: Served) -> None:
    with client_for(served, api_key="s3cret") as c:
        assert c.post("/search", json={"text": "a circle"}).status_code == 401
        assert c.post("/search", json={"text": "a circle"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert (
            c.post("/search", json={"text": "a circle"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
        for url in ("/openapi.json", "/items/s0", "/items/s0/media", "/info"):
            assert c.get(url).status_code == 401, url
        for url in ("/health", "/", "/static/app.js", "/static/style.css"):
            assert c.get(url).status_code == 200, url
        for url in ("/static/../info", "/static/%2E%2E/info", "/static/..%2Finfo"):  # no way around the key
            r = c.get(url)
            assert r.status_code in (401, 404) and "items" not in r.text, url


def test_body_over_the_limit_is_413_by_length_and_by_stream(served: Served) -> None:
    with client_for(served, max_body_bytes=1000) as c:
        big = json.dumps({"text": "a" * 2000})
        assert c.post("/search", content=big, headers={"content-type": "application/json"}).status_code == 413

        def chunks() -> Any:  # no Content-Length: only the streamed size tells
            for _ in range(20):
                yield b"x" * 100

        r = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "limit of 1000 bytes" in r.json()["detail"]
        upload = c.post("/search", files={"image": ("q.png", b"\0" * 5000, "image/png")})
        assert upload.status_code == 413


def _bomb_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")  # compresses to a few KB
    return buf.getvalue()


@pytest.mark.parametrize(
    "field, data, message",
    [
        ("image", b"not an image at all", "not a recognised image format"),
        ("image", b"", "empty"),
        ("image", b"GIF89a", "cannot decode the uploaded image"),
        ("image", "truncated", "cannot decode the uploaded image"),
        ("image", "bomb", "more than the service's limit of 1000000"),
        ("audio", b"RIFF\x00\x00\x00\x00WAVEjunk", "cannot decode the uploaded audio"),
        ("audio", "long", "more than the service's limit of 1 s"),
    ],
)
def test_malformed_or_oversized_media_is_422_with_a_clear_message(
    served: Served, field: str, data: Any, message: str
) -> None:
    if data == "truncated":
        data = png_bytes(served.root / "images" / "0.png")[:60]
    elif data == "bomb":
        data = _bomb_png(3000)
    elif data == "long":
        buf = io.BytesIO()
        sf.write(buf, np.zeros(8000 * 2, dtype=np.float32), 8000, format="WAV")
        data = buf.getvalue()
    with client_for(served, max_image_pixels=1_000_000, max_audio_seconds=1.0) as c:
        r = c.post("/search", files={field: ("upload", data, "application/octet-stream")})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"content": b"a circle", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
        ({"json": {"text": "x", "k": 0}}, 422, "k"),
        ({"json": {"text": "x", "k": 5000}}, 422, "between 1 and 1000"),
        ({"json": {"text": ""}}, 422, "text"),
        ({"json": {"text": "a" * 2001}}, 422, "more than the limit of 2000"),
        ({"json": {"text": "x", "url": "http://127.0.0.1:9/"}}, 422, "url"),
        ({"json": {"text": "x", "filter": {"label": {"near": 2}}}}, 422, "gte"),
        ({"json": {"text": "x", "filter": ["split"]}}, 422, "filter"),
        ({"json": {"text": "x", "modality": "image"}}, 422, "not a text modality"),
        ({"files": {"image": (None, "http://127.0.0.1:9/a.png")}}, 422, "upload exactly one file"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    client: TestClient, kwargs: dict[str, Any], status: int, message: str
) -> None:
    r = client.post("/search", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_no_cors_headers_unless_origins_are_configured(served: Served, client: TestClient) -> None:
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/search", headers=headers).headers
    assert "access-control-allow-origin" not in client.get("/health", headers=headers).headers
    with client_for(served, cors_origins=("http://app.example",)) as c:
        ok = c.get("/health", headers={"Origin": "http://app.example"})
        assert ok.headers["access-control-allow-origin"] == "http://app.example"
        assert "access-control-allow-origin" not in c.get("/health", headers=headers).headers


class _SlowModel:
    """The model's interface with an encode that takes 2 s."""

    def __init__(self, model: Any):
        self.specs, self.embed_dim, self._model = model.specs, model.embed_dim, model

    def encode(self, inputs: Any, modality: str) -> np.ndarray:
        import time

        time.sleep(2.0)
        return self._model.encode(inputs, modality)


def test_a_slow_request_times_out_with_504(served: Served) -> None:
    app = create_app(served.index, _SlowModel(served.model), ServeSettings(timeout_s=0.2))
    with TestClient(app) as c:
        r = c.post("/search", json={"text": "a circle"})
    assert r.status_code == 504
    assert "longer than 0.2 s" in r.json()["detail"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"api_key": ""}, "must not be empty"),
        ({"cors_origins": ("*",)}, "'*' is refused"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"timeout_s": 0.0}, "timeout_s"),
    ],
)
def test_unsafe_or_invalid_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    from modalign.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServeSettings(**kwargs)


def test_default_limits_refuse_a_17_megapixel_image_and_a_61_second_clip(client: TestClient) -> None:
    # the README's defaults: 16 megapixels, 60 s (checked from the headers, before decoding)
    r = client.post("/search", files={"image": ("big.png", _bomb_png(4100), "image/png")})
    assert r.status_code == 422 and "more than the service's limit of 16000000" in r.json()["detail"]
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000 * 61, dtype=np.float32), 8000, format="WAV")
    r = client.post("/search", files={"audio": ("long.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 422 and "more than the service's limit of 60 s" in r.json()["detail"]


def test_only_loopback_hosts_count_as_local() -> None:
    from modalign.serving.server import api_key_from, is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "example.org"]))
    assert api_key_from("given") == "given"


def test_serve_caps_concurrency_at_256_and_refuses_a_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from modalign.errors import ConfigError
    from modalign.serving.server import serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    serve(object())
    assert calls[0]["limit_concurrency"] == 256 and calls[0]["host"] == "127.0.0.1"
    with pytest.raises(ConfigError, match="--port"):
        serve(object(), port=70000)
