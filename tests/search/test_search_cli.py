"""index build + search from the command line, checked against brute force over the embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import search_fixtures
from typer.testing import CliRunner

from modalign.cli import app
from modalign.errors import ConfigError
from modalign.model import load
from modalign.search import Index
from modalign.search.compose import compose
from modalign.search.embeddings import read_embeddings
from modalign.workflows.embed import run_embed
from modalign.workflows.search import parse_filters, trained_with_symile

model_dir, corpus = search_fixtures.model_dir, search_fixtures.corpus  # shared session fixtures


@pytest.fixture(scope="module")
def built(model_dir: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("search")
    run_embed(model_dir, corpus, "image", root / "emb", chunk_rows=32, show_progress=False)
    result = CliRunner().invoke(app, ["index", "build", str(root / "emb"), "--out", str(root / "idx")])
    assert result.exit_code == 0, result.output
    assert "indexed 68 items" in result.output
    return root / "emb", root / "idx"


def cli_search(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["search", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["results"]


def brute(emb_dir: Path, q: np.ndarray, k: int, keep=lambda m: True) -> list[tuple[str, float]]:
    emb = read_embeddings(emb_dir)
    scores = emb.vectors @ (q / np.linalg.norm(q))
    order = [i for i in np.argsort(-scores, kind="stable") if keep(emb.metadata[i])]
    return [(emb.ids[i], float(scores[i])) for i in order[:k]]


def test_text_query_with_filter_equals_brute_force(built: tuple[Path, Path], model_dir: Path) -> None:
    emb_dir, idx = built
    q = load(model_dir).encode(["a circle"], "text")[0]
    hits = cli_search(str(idx), "--text", "a circle", "--k", "5", "--filter", "split=test")
    ref = brute(emb_dir, q, 5, lambda m: m["split"] == "test")
    assert [h["id"] for h in hits] == [i for i, _ in ref]
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in ref], atol=1e-5)
    assert all(h["metadata"]["split"] == "test" for h in hits)


def test_image_query_finds_itself_and_like_leaves_it_out(
    built: tuple[Path, Path], corpus: Path, model_dir: Path
) -> None:
    emb_dir, idx = built
    row = json.loads(corpus.read_text().splitlines()[7])
    hits = cli_search(str(idx), "--model", str(model_dir), "--image", row["image"], "--k", "3")
    assert hits[0]["id"] == row["id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    like = cli_search(str(idx), "--like", row["id"], "--k", "4", "--filter", "label>=1")
    vec = read_embeddings(emb_dir).vectors[read_embeddings(emb_dir).ids.index(row["id"])]
    ref = [(i, s) for i, s in brute(emb_dir, vec, 6, lambda m: m["label"] >= 1) if i != row["id"]][:4]
    assert [h["id"] for h in like] == [i for i, _ in ref]


def test_composed_query_ranks_by_weighted_sum_of_cosines(
    built: tuple[Path, Path], corpus: Path, model_dir: Path
) -> None:
    emb_dir, idx = built
    row = json.loads(corpus.read_text().splitlines()[2])
    model = load(model_dir)
    t, i = model.encode(["a square"], "text")[0], model.encode([row["image"]], "image")[0]
    args = ["--text", "a square", "--image", row["image"], "--weight", "text=2", "--weight", "image=0.5"]
    hits = cli_search(str(idx), *args, "--k", "6")
    emb = read_embeddings(emb_dir)
    combined = 2 * (emb.vectors @ t) + 0.5 * (emb.vectors @ i)  # the definition, per candidate
    order = np.argsort(-combined, kind="stable")[:6]
    assert [h["id"] for h in hits] == [emb.ids[j] for j in order]
    symile = cli_search(
        str(idx), "--text", "a square", "--image", row["image"], "--combine", "symile", "--k", "6"
    )
    mip = np.einsum("d,d,nd->n", t, i, emb.vectors)  # Σ_d t_d i_d c_d
    order = np.argsort(-mip, kind="stable")[:6]
    assert [h["id"] for h in symile] == [emb.ids[j] for j in order]
    np.testing.assert_allclose([h["score"] for h in symile], mip[order], atol=1e-5)


def test_compose_rejects_what_it_cannot_do() -> None:
    a, b = np.eye(3, dtype=np.float32)[:2]
    with pytest.raises(ConfigError, match="zero vector"):
        compose({"text": a, "image": a}, {"text": 1.0, "image": -1.0})
    with pytest.raises(ConfigError, match="weights do not apply"):
        compose({"text": a, "image": b}, {"text": 2.0}, "symile")
    with pytest.raises(ConfigError, match="the query has only"):
        compose({"text": a}, {"audio": 1.0})


def test_parse_filters() -> None:
    assert parse_filters(["split=test", "year>=2000", "year<2010", "label=3|x"]) == {
        "split": ["test"],
        "year": {"gte": 2000, "lt": 2010},
        "label": [3, "3", "x"],
    }
    assert parse_filters(['{"tag": {"in": ["a"]}}', "n!=2"]) == {"tag": {"in": ["a"]}, "n": {"ne": 2}}
    assert parse_filters([]) is None
    with pytest.raises(ConfigError, match="needs a number"):
        parse_filters(["year>=soon"])
    with pytest.raises(ConfigError, match="write FIELD=VALUE"):
        parse_filters(["split"])


def test_symile_runs_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "config.yaml").write_text("objectives:\n- name: symile\n  params: {}\n")
    assert trained_with_symile(tmp_path / "model") and trained_with_symile(tmp_path)
    (tmp_path / "config.yaml").write_text("objectives:\n- name: clip\n")
    assert not trained_with_symile(tmp_path / "model")


def test_search_errors_are_one_line(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, idx = built
    result = CliRunner().invoke(app, ["search", str(idx), "--like", "nope"])
    assert result.exit_code == 2 and "no item with id 'nope'" in result.output
    result = CliRunner().invoke(app, ["search", str(tmp_path), "--text", "x"])
    assert result.exit_code == 2 and "index.json is missing" in result.output
    with Index.open(idx) as opened:
        assert opened.info["media_column"] == "image" and opened.info["modality"] == "image"


def test_hnsw_build_with_params_from_the_cli(built: tuple[Path, Path], tmp_path: Path) -> None:
    emb_dir, _ = built
    args = [
        "index",
        "build",
        str(emb_dir),
        "--out",
        str(tmp_path / "h"),
        "--kind",
        "hnsw",
        "--param",
        "ef_search=128",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with Index.open(tmp_path / "h") as idx:
        # the README's defaults, with the one parameter given
        assert idx.kind == "hnsw" and idx.params == {"m": 32, "ef_construction": 64, "ef_search": 128}
    result = CliRunner().invoke(
        app, ["index", "build", str(emb_dir), "--out", str(tmp_path / "x"), "--param", "m"]
    )
    assert result.exit_code == 2 and "write NAME=VALUE" in result.output
