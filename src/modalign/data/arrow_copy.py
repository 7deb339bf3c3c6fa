"""A memory-mapped Arrow copy of a Parquet file whose cells hold media bytes.

Parquet is encoded (and usually compressed) column by column, so pyarrow can only decode it into
memory: a Parquet file of ``Image``/``Audio`` cells would be held whole in RAM, media bytes
included. Such a file is converted once, one row group at a time, into an uncompressed Arrow IPC
file in the cache directory, named by the Parquet file's resolved path, size and modification time
(a changed file gets a new copy), written atomically; every process (ranks, DataLoader workers)
then memory-maps that copy, so a row's bytes are read from disk when the row is read and the
kernel may drop them again. The cost is disk space: about the file's uncompressed size.

Cache directory: ``MODALIGN_CACHE``, else ``$XDG_CACHE_HOME/modalign``, else ``~/.cache/modalign``
(copies go to its ``parquet/`` folder; delete it to reclaim the space).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

from modalign.errors import DataError
from modalign.io import atomic_write

CACHE_ENV = "MODALIGN_CACHE"


def cache_root() -> Path:
    """The cache directory (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modalign"


def copy_path(path: Path) -> Path:
    """Where the Arrow copy of the Parquet file ``path`` is (or goes)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return cache_root() / "parquet" / f"{key}.arrow"


def mapped_table(path: Path) -> Any:
    """The Parquet file ``path`` as a ``pyarrow.Table`` memory-mapped from its Arrow copy.

    Raises:
        DataError: the file cannot be read as Parquet. OutputError: the copy cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = copy_path(path)
    if not out.is_file():
        try:
            source = pq.ParquetFile(path)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise unreadable_parquet(path, e) from None

        def write(f: BinaryIO) -> None:
            with pa.ipc.new_file(f, source.schema_arrow) as writer:
                for k in range(source.num_row_groups):  # one row group in memory at a time
                    try:
                        group = source.read_row_group(k)
                    except (pa.ArrowException, OSError, ValueError) as e:
                        raise unreadable_parquet(path, e) from None
                    writer.write_table(group)

        atomic_write(out, write)
    return pa.ipc.open_file(pa.memory_map(str(out), "r")).read_all()


def unreadable_parquet(path: Path, e: Exception) -> DataError:
    message = f"cannot read Parquet ({e}); the file is corrupt or not Parquet"
    return DataError(message, reason="bad_manifest", path=str(path))
