"""The ``data`` section: the manifest, its splits and how training rows are read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from modalign.config._base import _Frozen


class DataConfig(_Frozen):
    manifest: Path = Field(
        ...,
        description="JSONL, CSV or Parquet manifest, one row per sample, or a Hugging Face dataset "
        "directory written by save_to_disk",
    )
    archive: Path | None = Field(
        None, description="tar(.gz) extracted next to itself when the manifest does not exist yet"
    )
    id_column: str = Field("id", description="column holding the sample id")
    split_column: str = Field("split", description="column naming each row's split")
    train_split: str = Field("train", description="split the model and the transforms are fitted on")
    val_split: str | None = Field("val", description="split of the validation loss; null = none")
    test_split: str | None = Field("test", description="split evaluated after training; null = none")
    label_column: str | None = Field(None, description="class label, used by zero-shot evaluation")
    on_error: Literal["skip", "fail"] = Field(
        "skip", description="skip (and count) bad rows, or fail with a DataError"
    )
    source: Literal["auto", "memory", "stream", "shards"] = Field(
        "auto",
        description="training rows preprocessed in memory, streamed from the manifest by DataLoader "
        "workers (bounded memory, same batches), or from data.shards; auto streams above "
        "data.stream_above rows",
    )
    shards: Path | None = Field(
        None, description="directory of `modalign data pack` shards of the manifest (data.source: shards)"
    )
    shuffle_buffer: int = Field(1000, ge=1, description="records each shard reader shuffles among")
    stream_above: int = Field(50_000, ge=0, description="training rows above which data.source=auto streams")
    workers: int = Field(2, ge=0, description="DataLoader worker processes of a streamed source (0 = none)")
