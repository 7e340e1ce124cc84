"""Writing label shards atomically, and the manifest that lists them.

Layout of a label directory::

    DIR/manifest.json            shards, rows, ok/error counts, sizes, sha256, metadata
    DIR/shards/part-00000.parquet
    DIR/shards/part-00001.parquet
    ...

A shard file only ever appears complete: it is written under a hidden temporary name in
the same folder and renamed into place, so its presence marks the shard as done (the unit
of resume of the labeling job). The manifest is rewritten the same way after each shard.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataset.schema import LABEL_SCHEMA, STATUS_OK, read_metadata, schema_with_metadata

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
DEFAULT_ROW_GROUP = 256
DEFAULT_ZSTD_LEVEL = 9


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; published shards follow the umask.
FILE_MODE = 0o666 & ~_umask()


class ShardError(ValueError):
    """A label shard or directory that cannot be read; the message names the file."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def shard_path(directory: str | Path, index: int) -> Path:
    return Path(directory) / SHARD_DIR / shard_name(index)


@dataclass
class ShardInfo:
    name: str
    rows: int
    ok: int
    error: int
    bytes: int
    sha256: str


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rows_to_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> pa.Table:
    """Row dicts (missing keys = null) -> a table with the label schema and metadata."""
    return pa.Table.from_pylist(rows, schema=schema_with_metadata(meta))


def write_shard(
    directory: str | Path,
    index: int,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    *,
    row_group_size: int = DEFAULT_ROW_GROUP,
    compression_level: int = DEFAULT_ZSTD_LEVEL,
) -> ShardInfo:
    """Write rows as shard `index` of `directory`, atomically; returns its manifest entry."""
    table = rows_to_table(rows, meta)
    path = shard_path(directory, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, FILE_MODE)
        pq.write_table(
            table, tmp, row_group_size=row_group_size, compression="zstd",
            compression_level=compression_level, use_dictionary=["status", "error"],
            write_statistics=["image_id", "class_index", "status"],
        )
        info = _info_for(Path(tmp), table, path.name)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return info


def _info_for(path: Path, table: pa.Table, name: str) -> ShardInfo:
    statuses = table.column("status").to_pylist()
    ok = sum(s == STATUS_OK for s in statuses)
    return ShardInfo(
        name=name, rows=table.num_rows, ok=ok, error=table.num_rows - ok,
        bytes=path.stat().st_size, sha256=_sha256(path),
    )


def shard_info(path: Path) -> ShardInfo:
    """Manifest entry of an existing shard file (reads its status column)."""
    table = open_shard(path).read(columns=["status"])
    return _info_for(path, table, path.name)


def open_shard(path: Path) -> pq.ParquetFile:
    """Open a Parquet shard, turning any failure into one ShardError line naming the file."""
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard") from None
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShardError(f"{path}: not a readable Parquet file ({reason})") from None


def list_shards(directory: str | Path) -> list[Path]:
    """The finished shard files of a label directory, in name order."""
    root = Path(directory)
    if not root.is_dir():
        raise ShardError(f"{root}: no such label directory")
    return sorted((root / SHARD_DIR).glob("part-*.parquet"))


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: not valid JSON ({exc})") from None


def write_manifest(
    directory: str | Path, infos: list[ShardInfo], meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """(Re)write DIR/manifest.json atomically from shard entries; returns the document."""
    infos = sorted(infos, key=lambda i: i.name)
    manifest = {
        "schema_version": meta.get("schema_version"),
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "totals": {
            "shards": len(infos),
            "rows": sum(i.rows for i in infos),
            "ok": sum(i.ok for i in infos),
            "error": sum(i.error for i in infos),
            "bytes": sum(i.bytes for i in infos),
        },
        "shards": [asdict(i) for i in infos],
        "metadata": meta,
        **(extra or {}),
    }
    atomic_write_bytes(Path(directory) / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def rebuild_manifest(directory: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Recompute the manifest from the shard files on disk (after a crash, or by hand)."""
    paths = list_shards(directory)
    if not paths:
        raise ShardError(f"{directory}: no shards under {SHARD_DIR}/")
    meta = read_metadata(open_shard(paths[0]).schema_arrow)
    old = read_manifest(directory) or {}
    keep = {k: v for k, v in old.items() if k not in {"schema_version", "updated", "totals", "shards", "metadata"}}
    return write_manifest(directory, [shard_info(p) for p in paths], meta, {**keep, **(extra or {})})


__all__ = [
    "LABEL_SCHEMA", "MANIFEST", "SHARD_DIR", "ShardError", "ShardInfo", "atomic_write_bytes",
    "list_shards", "open_shard", "read_manifest", "rebuild_manifest", "shard_info",
    "shard_name", "shard_path", "write_manifest", "write_shard",
]
