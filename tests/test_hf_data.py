"""Hugging Face ``datasets`` data as a manifest: a ``save_to_disk`` directory or a Parquet file.

The oracle is the JSONL manifest of the same rows: the media bytes held by ``Image``/``Audio``
features decode to the same tensors as the files, so training from the saved dataset is
bit-identical to training from the JSONL (in memory and streamed).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

from modalign.config import load_config
from modalign.data.dataset import fit_transforms, split_rows
from modalign.data.loading import load_split
from modalign.data.manifest import read_manifest
from modalign.errors import DataError
from modalign.workflows.build import build_sources
from modalign.workflows.train import run_training

datasets = pytest.importorskip("datasets")
datasets.disable_progress_bars()
SPLITS = ("train", "val", "test")


def hf_rows(manifest: Path, split: str | None = None) -> list[dict[str, Any]]:
    """The JSONL's rows with the files' bytes inside (``split`` = only those, without the column)."""
    rows = []
    for line in manifest.read_text().splitlines():
        r = json.loads(line)
        if split is not None and r.pop("split") != split:
            continue
        image, audio = manifest.parent / r["image"], manifest.parent / r["audio"]
        r["image"] = {"bytes": image.read_bytes(), "path": None}
        r["audio"] = {"bytes": audio.read_bytes(), "path": r["audio"]}
        del r["extra"]
        rows.append(r)
    return rows


def to_dataset(rows: list[dict[str, Any]]) -> Any:
    ds = datasets.Dataset.from_list(rows)
    return ds.cast_column("image", datasets.Image()).cast_column("audio", datasets.Audio())


@pytest.fixture(scope="module")
def saved(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict (train/val/test) of the synthetic data, saved with save_to_disk."""
    out = tmp_path_factory.mktemp("hf") / "saved"
    datasets.DatasetDict({s: to_dataset(hf_rows(dataset, s)) for s in SPLITS}).save_to_disk(str(out))
    return out


def config(manifest: Path, source: str = "memory") -> Any:
    raw = tiny_config(manifest, max_steps=6)
    raw["data"].update({"source": source, "workers": 1})
    raw["modalities"]["image"]["transform"]["random_shift"] = 1  # per-sample augmentation
    return load_config(raw=raw)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def jsonl_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jsonl") / "run"
    run_training(config(dataset), out, show_progress=False)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ra, rb = (json.loads((r / "report.json").read_text()) for r in (a, b))
    del ra["meta"], rb["meta"]  # paths and timings
    assert ra == rb and any(k.startswith("retrieval/") for k in ra)


def test_saved_dataset_rows_decode_to_the_jsonl_tensors(dataset: Path, saved: Path) -> None:
    cfg = config(dataset)
    jsonl, hf = read_manifest(dataset), read_manifest(saved)
    assert len(hf.rows) == len(jsonl.rows)
    sources = build_sources(cfg)
    fit_transforms(jsonl, sources, split_rows(jsonl, "split", "train"))
    for split in SPLITS:  # a DatasetDict's split names are the split column, in its order
        assert split_rows(hf, "split", split) == split_rows(jsonl, "split", split)
        a = load_split(jsonl, sources, split, show_progress=False)
        b = load_split(hf, sources, split, show_progress=False)
        assert a.ids == b.ids
        for name in ("image", "audio", "text"):
            for x, y in zip(a.data[name], b.data[name]):
                assert x is not None and y is not None and torch.equal(x, y)


@pytest.mark.parametrize("source", ["memory", "stream"])
def test_training_from_a_saved_dataset_equals_the_jsonl(
    saved: Path, jsonl_run: Path, tmp_path: Path, source: str
) -> None:
    run_training(config(saved, source), tmp_path / "run", show_progress=False)
    assert_same_run(jsonl_run, tmp_path / "run")


def test_training_from_hf_parquet_equals_the_jsonl(dataset: Path, jsonl_run: Path, tmp_path: Path) -> None:
    rows = hf_rows(dataset)  # one table with a split column, written by datasets' Parquet writer
    to_dataset(rows).to_parquet(str(tmp_path / "m.parquet"))
    run_training(config(tmp_path / "m.parquet"), tmp_path / "run", show_progress=False)
    assert_same_run(jsonl_run, tmp_path / "run")


def test_rows_are_read_lazily_and_pickle_without_their_tables(saved: Path) -> None:
    import pyarrow as pa

    from modalign.data.transforms._files import InlineFile

    before = pa.total_allocated_bytes()
    rows = read_manifest(saved).rows
    assert not isinstance(rows, list)
    every = list(rows)  # every row built, their media cells views of the memory-mapped files
    media = [r[c] for r in every for c in ("image", "audio")]
    assert all(isinstance(x, InlineFile) for x in media)
    held = sum(len(memoryview(x.data)) for x in media)
    assert held > 10_000 and pa.total_allocated_bytes() - before < held // 10  # nothing copied
    blob = pickle.dumps(rows)  # what a spawned DataLoader worker would receive
    assert len(blob) < 1000  # the path, not the media (72 images and recordings)
    again = pickle.loads(blob)
    assert len(again) == len(rows) and again[5]["id"] == rows[5]["id"]


def test_path_cells_and_decoded_audio_arrays(dataset: Path, tmp_path: Path) -> None:
    """An Image cell with only a path reads the file; ``{array, sampling_rate}`` is a waveform."""
    import soundfile as sf

    sources = build_sources(config(dataset))
    plain_manifest = read_manifest(dataset)
    fit_transforms(plain_manifest, sources, split_rows(plain_manifest, "split", "train"))
    plain = load_split(plain_manifest, sources, "test", show_progress=False)
    rows = []
    for r in hf_rows(dataset, "test"):
        wave, rate = sf.read(dataset.parent / r["audio"]["path"], dtype="float32")
        abs_path = str(dataset.parent / "images" / f"{r['id'][1:]}.png")
        audio = {"array": wave, "sampling_rate": rate}
        rows.append({**r, "image": {"bytes": None, "path": abs_path}, "audio": audio})
    ds = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "d"))
    got = load_split(read_manifest(tmp_path / "d"), sources, None, show_progress=False)
    assert got.ids == plain.ids
    for name in ("image", "audio"):
        for x, y in zip(plain.data[name], got.data[name]):
            assert x is not None and y is not None and torch.equal(x, y)


def test_undecodable_image_bytes_name_the_row_and_column(dataset: Path, tmp_path: Path) -> None:
    rows = hf_rows(dataset, "test")
    rows[3]["image"] = {"bytes": b"not a png", "path": "broken.png"}
    rows[5]["image"] = None  # absent, not bad
    to_dataset(rows).save_to_disk(str(tmp_path / "d"))
    manifest = read_manifest(tmp_path / "d")
    sources = build_sources(config(dataset))
    fit_transforms(manifest, sources, list(range(len(rows))))
    with pytest.raises(DataError) as e:
        load_split(manifest, sources, None, on_error="fail", show_progress=False)
    assert (e.value.row, e.value.column, e.value.reason) == (3, "image", "bad_image")
    assert "broken.png" in str(e.value)
    skipped = load_split(manifest, sources, None, show_progress=False)
    assert dict(skipped.skipped) == {"bad_image": 1} and len(skipped) == len(rows) - 1
    assert skipped.data["image"][skipped.ids.index(rows[5]["id"])] is None


def test_a_missing_column_is_a_data_error_naming_it(dataset: Path, tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "audio"} for r in hf_rows(dataset)]
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match="audio") as e:
        run_training(config(tmp_path / "d"), tmp_path / "run", show_progress=False)
    assert e.value.column == "audio"


def test_bad_directories_are_data_errors(dataset: Path, saved: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        read_manifest(tmp_path / "plain")
    rows = hf_rows(dataset)  # still holding its split column
    datasets.DatasetDict({"train": to_dataset(rows)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="column 'split'"):
        read_manifest(tmp_path / "dd")
    (tmp_path / "broken").mkdir()
    for f in ("state.json", "dataset_info.json"):
        (tmp_path / "broken" / f).write_text("{not json")
    with pytest.raises(DataError, match="cannot load"):
        read_manifest(tmp_path / "broken")


def test_datasets_is_imported_only_for_a_saved_dataset_and_offline(
    dataset: Path, saved: Path, tmp_path: Path
) -> None:
    to_dataset(hf_rows(dataset)).to_parquet(str(tmp_path / "m.parquet"))
    code = (
        "import os, sys; from modalign.data.manifest import read_manifest\n"
        f"read_manifest({str(dataset)!r}); read_manifest({str(tmp_path / 'm.parquet')!r})\n"
        "print('datasets' in sys.modules)\n"
        f"read_manifest({str(saved)!r}); print(os.environ.get('HF_DATASETS_OFFLINE'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "1"]


def test_a_saved_dataset_packs_into_shards_that_train_like_it(
    saved: Path, jsonl_run: Path, tmp_path: Path
) -> None:
    """``modalign data pack`` keeps Image/Audio bytes as members; shards decode them like files."""
    from modalign.data.sources import ShardBatches, pack_manifest

    manifest = read_manifest(saved)
    result = pack_manifest(manifest, tmp_path / "shards", shard_size=10)
    assert result.samples == len(manifest.rows) and result.files == 2 * len(manifest.rows)
    cfg = config(saved)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
    memory = load_split(manifest, sources, "test", show_progress=False)
    reader = ShardBatches(result.shards, sources, 1, buffer_size=1, split="test")
    seen = 0
    for batch, _ in reader.epoch_batches():
        k = memory.ids.index(batch.ids[0])
        for name in ("image", "audio"):
            assert torch.equal(batch.inputs[name][0], memory.data[name][k])
        seen += 1
    assert seen == len(memory)


def test_init_infers_image_and_audio_modalities_from_in_dataset_bytes(saved: Path) -> None:
    from modalign.workflows.init import infer_config

    result = infer_config(saved)
    modalities = result.raw["modalities"]
    assert modalities["image"]["kind"] == "image" and modalities["audio"]["kind"] == "audio"
    assert modalities["image"]["transform"]["channels"] == 1  # the grey PNGs were decoded
    assert modalities["audio"]["transform"]["sample_rate"] == 8000  # the WAV headers were read
