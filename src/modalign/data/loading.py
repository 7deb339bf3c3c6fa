"""Load the splits a run needs, with a Rich progress bar for the preprocessing pass."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from modalign.data.dataset import ModalitySource, SampleSet, load_samples, split_rows
from modalign.data.manifest import Manifest, ensure_extracted, read_manifest


def open_manifest(manifest: Path, archive: Path | None = None) -> Manifest:
    """Extract the archive first when it provides the manifest, then read it."""
    ensure_extracted(manifest, archive)
    return read_manifest(manifest)


def load_split(
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    split: str | None,
    *,
    split_column: str = "split",
    id_column: str = "id",
    keep_columns: Sequence[str] = (),
    on_error: str = "skip",
    show_progress: bool = True,
) -> SampleSet:
    """Preprocess one split (every row when ``split`` is None) into a :class:`SampleSet`."""
    rows = split_rows(manifest, split_column, split)
    ctx: Any = nullcontext()
    if show_progress:
        from rich.progress import Progress

        ctx = Progress(transient=True)
    with ctx as bar:
        update = None
        if bar is not None:
            task = bar.add_task(f"loading {split or 'all'} ({len(rows)} rows)", total=len(rows))

            def update(done: int) -> None:
                if done % 64 == 0 or done == len(rows):
                    bar.update(task, completed=done)

        return load_samples(
            manifest,
            sources,
            rows,
            id_column=id_column,
            keep_columns=keep_columns,
            on_error=on_error,
            progress=update,
        )
