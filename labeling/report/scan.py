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
import pyarrow.parquet as pq

from dataset.schema import LABEL_COLUMNS, check_schema, read_metadata
from dataset.shards import MANIFEST, ShardError, list_shards, open_shard

log = logging.getLogger(__name__)

# What the galleries read back: everything but the optional image copy.
SCAN_COLUMNS = list(LABEL_COLUMNS)
SKIPPED_FIELDS = {"counts", "bbox", "image_bytes"}  # the bulk of the bytes; not needed


@dataclass(frozen=True)
class Group:
    shard: int  # index into the directory's shard list
    group: int  # row group within the shard
    first_row: int  # index of the group's first row within the shard
    rows: int


class LabelDir:
    """A label directory as the report sees it, from one pass over the Parquet footers.

    Unlike dataset.LabelReader it keeps no file open (a parsed footer with the vocabularies
    takes a few hundred KB, which adds up over a thousand shards): every read reopens its
    shard. Each shard's schema is checked; the first problem raises a ShardError naming it.
    """

    def __init__(self, directory: str | Path):
        self.root = Path(directory)
        self.paths = list_shards(self.root)
        if not self.paths:
            raise ShardError(f"{self.root}: no shards (expected shards/part-*.parquet)")
        self.groups: list[Group] = []
        self.column_bytes: dict[str, int] = {}
        self.image_bytes = False
        for s, path in enumerate(self.paths):
            f = open_shard(path)
            problems = check_schema(f.schema_arrow)
            if problems:
                raise ShardError(f"{path}: {problems[0]}")
            if s == 0:
                self.metadata = read_metadata(f.schema_arrow)
                self.stats_columns = _stats_columns(f.metadata.schema)
            self._add_footer(s, f.metadata)

    def _add_footer(self, s: int, meta: pq.FileMetaData) -> None:
        first = 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            self.groups.append(Group(s, g, first, rg.num_rows))
            first += rg.num_rows
            for c in range(rg.num_columns):
                chunk = rg.column(c)
                top = chunk.path_in_schema.split(".")[0]
                self.column_bytes[top] = self.column_bytes.get(top, 0) + chunk.total_compressed_size
                if top == "image_bytes" and not self.image_bytes:
                    stats = chunk.statistics  # all null -> no stored images in this chunk
                    self.image_bytes = stats is None or stats.null_count is None or (
                        stats.null_count < chunk.num_values)

    def __len__(self) -> int:
        return sum(g.rows for g in self.groups)

    @property
    def semantic_vocab(self) -> dict[int, str]:
        return self.metadata["vocabularies"]["semantic"]

    @property
    def classes(self) -> dict[int, str]:
        return self.metadata["vocabularies"].get("classes", {})

    @property
    def input_root(self) -> str | None:
        return self.metadata.get("input_root")

    def disk_usage(self) -> dict[str, Any]:
        """Bytes on disk: shard files, manifest, per top-level column, and footers."""
        shard_bytes = sum(os.path.getsize(p) for p in self.paths)
        manifest = self.root / MANIFEST
        return {
            "shards": len(self.paths),
            "shard_bytes": shard_bytes,
            "manifest_bytes": manifest.stat().st_size if manifest.exists() else 0,
            "bytes_per_row": shard_bytes / len(self) if len(self) else None,
            "columns": dict(sorted(self.column_bytes.items(), key=lambda kv: -kv[1])),
            # Parquet footers: schema, row-group index and the c2fmae metadata (vocabularies)
            "footer_bytes": shard_bytes - sum(self.column_bytes.values()),
        }


def _stats_columns(schema: pq.ParquetSchema) -> list[str]:
    """Parquet leaf paths the statistics pass reads: every label column except the RLE
    counts, boxes and the image copy, so the pass reads a small share of the file's bytes."""
    paths = [schema.column(i).path for i in range(len(schema))]
    return [p for p in paths if not set(p.split(".")) & SKIPPED_FIELDS
            and p.split(".")[0] in LABEL_COLUMNS]


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
    reader: LabelDir, groups: Sequence[Group], columns: Sequence[str] = SCAN_COLUMNS,
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
    reader: LabelDir, positions: Sequence[tuple[int, int]], columns: Sequence[str],
) -> dict[tuple[int, int], dict[str, Any]]:
    """Rows at (shard, row) positions as dicts, reading each needed row group once."""
    wanted: dict[Group, list[tuple[int, int]]] = {}
    for shard, row in positions:
        grp = next(g for g in reader.groups
                   if g.shard == shard and g.first_row <= row < g.first_row + g.rows)
        wanted.setdefault(grp, []).append((row, row - grp.first_row))
    out = {}
    for grp, rows in sorted(wanted.items(), key=lambda kv: (kv[0].shard, kv[0].group)):
        table = open_shard(reader.paths[grp.shard]).read_row_group(grp.group, columns=list(columns))
        for row, offset in rows:
            out[(grp.shard, row)] = table.slice(offset, 1).to_pylist()[0]
    return out


def resolve_image_root(reader: LabelDir, override: str | Path | None) -> Path | None:
    """Where the image files are: --images, else the input root recorded in the metadata
    (relative roots are tried against the working directory, then the label directory)."""
    if override is not None:
        return Path(override)
    root = reader.input_root
    if not root:
        return None
    path = Path(root)
    if path.is_absolute() or path.exists():
        return path
    beside = reader.root / path
    return beside if beside.exists() else path
