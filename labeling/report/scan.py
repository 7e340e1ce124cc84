"""Reading a label directory for the report: row groups, a quick sample, rows by position.

The report never holds more than one row group of a directory in memory. `--sample N`
reads whole row groups picked at random (seeded) until N rows are in hand, so a quick look
costs about N rows of I/O and still covers the whole directory, not just its first shard.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataset.reader import LabelReader
from dataset.schema import LABEL_COLUMNS
from dataset.shards import MANIFEST, ShardError, open_shard

log = logging.getLogger(__name__)

# What the galleries read back: everything but the optional image copy.
SCAN_COLUMNS = list(LABEL_COLUMNS)
SKIPPED_FIELDS = {"counts", "bbox", "image_bytes"}  # the bulk of the bytes; not needed


def stats_columns(reader: LabelReader) -> list[str]:
    """Parquet leaf paths the statistics pass reads: every label column except the RLE
    counts, boxes and the image copy, so the pass reads a small share of the file's bytes."""
    schema = open_shard(reader.paths[0]).metadata.schema
    paths = [schema.column(i).path for i in range(len(schema))]
    return [p for p in paths if not set(p.split(".")) & SKIPPED_FIELDS
            and p.split(".")[0] in LABEL_COLUMNS]


@dataclass(frozen=True)
class Group:
    shard: int  # index into the reader's shard list
    group: int  # row group within the shard
    first_row: int  # index of the group's first row within the shard
    rows: int


def row_groups(reader: LabelReader) -> list[Group]:
    """Every row group of the directory, in order (from Parquet footers only)."""
    groups = []
    for s, path in enumerate(reader.paths):
        meta = open_shard(path).metadata
        first = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            groups.append(Group(s, g, first, n))
            first += n
    return groups


def pick_groups(groups: list[Group], sample: int | None, seed: int) -> list[Group]:
    """All groups, or exactly `sample` rows: random groups (seeded), the last one cut short,
    returned in file order."""
    if sample is None:
        return groups
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    chosen: dict[int, Group] = {}
    rows = 0
    for i in order:
        if rows >= sample:
            break
        take = min(groups[i].rows, sample - rows)
        chosen[i] = replace(groups[i], rows=take)
        rows += take
    return [chosen[i] for i in sorted(chosen)]


def iter_tables(
    reader: LabelReader, groups: Sequence[Group], columns: Sequence[str] = SCAN_COLUMNS,
) -> Iterator[tuple[pa.Table, Group]]:
    """Yield (table, group) for the given row groups (the first `group.rows` rows of each)."""
    files: dict[int, Any] = {}
    for grp in groups:
        f = files.get(grp.shard)
        if f is None:
            files.clear()  # keep one shard open at a time
            f = files[grp.shard] = open_shard(reader.paths[grp.shard])
        try:
            table = f.read_row_group(grp.group, columns=list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{reader.paths[grp.shard]}: row group {grp.group} unreadable ({exc})") from None
        yield (table if table.num_rows == grp.rows else table.slice(0, grp.rows)), grp


def read_rows_at(
    reader: LabelReader, positions: Sequence[tuple[int, int]], columns: Sequence[str],
) -> dict[tuple[int, int], dict[str, Any]]:
    """Rows at (shard, row) positions as dicts, reading each needed row group once."""
    wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for shard, row in positions:
        meta = open_shard(reader.paths[shard]).metadata
        first = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if first <= row < first + n:
                wanted.setdefault((shard, g), []).append((row, row - first))
                break
            first += n
    out = {}
    for (shard, g), rows in sorted(wanted.items()):
        table = open_shard(reader.paths[shard]).read_row_group(g, columns=list(columns))
        for row, offset in rows:
            out[(shard, row)] = table.slice(offset, 1).to_pylist()[0]
    return out


def has_image_bytes(reader: LabelReader) -> bool:
    """Whether any shard stores the optional image copy (judged from column statistics)."""
    for path in reader.paths:
        meta = open_shard(path).metadata
        names = meta.schema.names
        if "image_bytes" not in names:
            continue
        col = names.index("image_bytes")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(col).statistics
            chunk = meta.row_group(g).column(col)
            if stats is None or stats.null_count is None or stats.null_count < chunk.num_values:
                return True
    return False


def disk_usage(reader: LabelReader) -> dict[str, Any]:
    """Bytes on disk: shard files, manifest, and compressed bytes per top-level column."""
    columns: dict[str, int] = {}
    shard_bytes = 0
    for path in reader.paths:
        shard_bytes += os.path.getsize(path)
        meta = open_shard(path).metadata
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                chunk = rg.column(c)
                top = chunk.path_in_schema.split(".")[0]
                columns[top] = columns.get(top, 0) + chunk.total_compressed_size
    manifest = reader.root / MANIFEST if reader.root is not None else None
    rows = len(reader)
    return {
        "shards": len(reader.paths),
        "shard_bytes": shard_bytes,
        "manifest_bytes": os.path.getsize(manifest) if manifest and manifest.exists() else 0,
        "bytes_per_row": shard_bytes / rows if rows else None,
        "columns": dict(sorted(columns.items(), key=lambda kv: -kv[1])),
        # Parquet footers: schema, row-group index and the c2fmae metadata (vocabularies)
        "footer_bytes": shard_bytes - sum(columns.values()),
    }


def resolve_image_root(reader: LabelReader, override: str | Path | None) -> Path | None:
    """Where the image files are: --images, else the input root recorded in the metadata
    (relative roots are tried against the working directory, then the label directory)."""
    if override is not None:
        return Path(override)
    root = reader.input_root
    if not root:
        return None
    path = Path(root)
    if path.is_absolute() or path.exists() or reader.root is None:
        return path
    beside = reader.root / path
    return beside if beside.exists() else path
