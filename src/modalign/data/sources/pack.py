"""``modalign data pack``: a manifest's rows and media files as WebDataset tar shards.

Each row ``i`` becomes one sample with key ``{i:09d}``: the member ``{key}.json`` holds the row as
it is (missing modalities stay null or absent) plus ``"__files__"`` (column -> member suffix) and
``"__row__"``; every cell naming an existing file (relative to the manifest, with a suffix), or
holding one (a Hugging Face ``Image``/``Audio`` cell), becomes the member ``{key}.{column}{suffix}``
holding the file's bytes. Any WebDataset reader
groups the members by key. Shards are ``shard-000000.tar``, ... of ``shard_size`` samples each,
each written to a temp file, fsynced and renamed, so a crash never leaves a torn shard.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalign.data.manifest import Manifest
from modalign.data.transforms._files import InlineFile
from modalign.errors import ConfigError, DataError
from modalign.io import atomic_write_json, current_umask, output_error

FILES_KEY, ROW_KEY = "__files__", "__row__"
INDEX = "index.json"  # sample count and rows per value of the "split" column


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_manifest` wrote: the shard paths, samples and media files."""

    shards: list[Path]
    samples: int
    files: int


def pack_manifest(
    manifest: Manifest,
    out: Path,
    shard_size: int,
    split_column: str = "split",
    progress: Callable[[int], None] | None = None,
) -> PackResult:
    """Write every row of ``manifest`` into shards of ``shard_size`` samples under ``out``.

    ``index.json`` beside them counts the rows per value of ``split_column`` (training needs the
    size of its split before streaming it). ``progress`` is called with the rows packed so far.
    """
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    out = Path(out)
    if out.exists() and any(out.glob("shard-*.tar")):
        raise ConfigError(f"{out} already holds shards; choose an empty --out")
    shards: list[Path] = []
    files = 0
    n = len(manifest.rows)
    for start in range(0, n, shard_size):
        path = out / f"shard-{len(shards):06d}.tar"
        with _atomic_tar(path) as tar:
            for i in range(start, min(start + shard_size, n)):  # rows on access (Arrow rows)
                files += _add_sample(tar, i, manifest.rows[i], manifest.base_dir)
                if progress is not None:
                    progress(i + 1)
        shards.append(path)
    splits: dict[str, int] = {}
    for row in manifest.rows:
        key = str(row.get(split_column))
        splits[key] = splits.get(key, 0) + 1
    index = {
        "samples": n,
        "shards": [p.name for p in shards],
        "split_column": split_column,
        "split_counts": splits,
    }
    atomic_write_json(out / INDEX, index)
    return PackResult(shards, n, files)


def _add_sample(tar: tarfile.TarFile, i: int, row: dict[str, Any], base_dir: Path) -> int:
    key = f"{i:09d}"
    members: dict[str, bytes] = {}
    row = dict(row)
    for column, value in row.items():
        if isinstance(value, InlineFile):  # a Hugging Face Image/Audio cell: its bytes
            members[f"{column}{value.suffix}"] = bytes(memoryview(value.data))
            row[column] = None  # the reader puts the member's path here
        elif (path := _media_file(value, base_dir)) is not None:
            members[f"{column}{path.suffix.lower()}"] = path.read_bytes()
    meta = {**row, FILES_KEY: {name.rsplit(".", 1)[0]: name for name in members}, ROW_KEY: i}
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as e:  # e.g. a decoded audio array (array, rate)
        raise DataError(
            f"this row cannot be packed ({e}); pack files or Image/Audio bytes, not decoded arrays",
            reason="bad_manifest",
            row=i,
        ) from None
    _add_member(tar, f"{key}.json", text.encode())
    for name, data in members.items():
        _add_member(tar, f"{key}.{name}", data)
    return len(members)


def _media_file(value: Any, base_dir: Path) -> Path | None:
    """The file a cell names (a string with a suffix naming an existing file), else None."""
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return None
    path = Path(value)
    if not path.suffix:
        return None
    path = path if path.is_absolute() else base_dir / path
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


class _atomic_tar:
    """A tar file written to a temp file beside ``path``, fsynced and renamed on success."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> tarfile.TarFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as e:
            raise output_error(self.path, e) from None
        self.file = os.fdopen(fd, "wb")
        os.fchmod(self.file.fileno(), 0o666 & ~current_umask())
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
        return self.tar

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self.tar.close()
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        except OSError as e:
            raise output_error(self.path, e) from None
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def shard_paths(directory: Path) -> list[Path]:
    """The ``shard-*.tar`` files of a directory, in name order (ConfigError when there is none)."""
    paths = sorted(Path(directory).glob("shard-*.tar"))
    if not paths:
        raise ConfigError(f"no shard-*.tar files in {directory}; write them with `modalign data pack`")
    return paths


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]] | tuple[str, None]]:
    """``(key, {suffix: bytes})`` per sample of a shard, in file order.

    A shard that cannot be read to its end-of-archive marker (truncated, not a tar) ends with
    ``(path, None)``. Python's tarfile takes a header cut short for the end of the archive, so the
    two zero blocks that end every tar are checked here.
    """
    key, group = None, {}
    complete = False
    try:
        with tarfile.open(path, mode="r|") as tar:  # streamed: one member in memory at a time
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name).name
                k, _, suffix = name.partition(".")
                if k != key and key is not None:
                    yield key, group
                    group = {}
                key = k
                f = tar.extractfile(member)
                group[suffix] = f.read() if f is not None else b""
            with open(path, "rb") as raw:
                raw.seek(tar.offset)
                end = raw.read(1024)
            complete = len(end) == 1024 and not any(end)
    except (tarfile.TarError, OSError, EOFError):
        pass
    if key is not None:
        yield key, group
    if not complete:
        yield str(path), None
