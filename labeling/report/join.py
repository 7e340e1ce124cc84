"""Pairing the rows of two label directories by image_id, in bounded memory.

Three ways, chosen by one cheap pass over the two `image_id` columns:
- `zip`: both directories list the same ids in the same order (two backends run on the
  same input list): rows are paired as they stream, one row group per side in memory;
- `merge`: both are sorted by image_id (but may differ, e.g. one is a subset): a merge join;
- `hash`: anything else, and `--sample`: a partitioned hash join. Both sides are spilled to
  Arrow IPC files in K partitions by a hash of image_id (K chosen so a partition holds about
  `partition_rows` rows), then each partition is joined in memory. Memory is one
  partition per side; disk is one copy of the compared columns.
"""

from __future__ import annotations

import logging
import math
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labeling.report.scan import Group, LabelDir, iter_tables

log = logging.getLogger(__name__)

JOIN_COLUMNS = ["image_id", "class_index", "height", "width", "status", "semantic", "instances"]
POSITION_COLUMNS = ["__shard", "__row"]
MAX_PARTITIONS = 256


@dataclass
class JoinCounts:
    method: str = ""
    joined: int = 0
    only_a: int = 0
    only_b: int = 0
    examples_only_a: list[str] = field(default_factory=list)
    examples_only_b: list[str] = field(default_factory=list)

    def missing(self, side: str, image_id: str) -> None:
        setattr(self, f"only_{side}", getattr(self, f"only_{side}") + 1)
        examples = getattr(self, f"examples_only_{side}")
        if len(examples) < 10:
            examples.append(image_id)


Pair = tuple[dict[str, Any], tuple[int, int], dict[str, Any], tuple[int, int]]


def _id_stream(reader: LabelDir, groups: Sequence[Group]) -> Iterator[str]:
    for table, _ in iter_tables(reader, groups, ["image_id"]):
        yield from table.column("image_id").to_pylist()


def check_order(reader_a: LabelDir, groups_a: Sequence[Group],
                reader_b: LabelDir, groups_b: Sequence[Group]) -> str:
    """'zip' if both id sequences are equal, 'merge' if both are sorted, else 'hash'."""
    same, sorted_a, sorted_b = True, True, True
    prev_a = prev_b = None
    sentinel = object()
    ids_b = _id_stream(reader_b, groups_b)
    for a in _id_stream(reader_a, groups_a):
        b = next(ids_b, sentinel)
        if b is sentinel:
            same = False
        else:
            same &= a == b
            if prev_b is not None and b < prev_b:
                sorted_b = False
            prev_b = b
        if prev_a is not None and a < prev_a:
            sorted_a = False
        prev_a = a
        if not (same or (sorted_a and sorted_b)):
            return "hash"
    for b in ids_b:
        same = False
        if prev_b is not None and b < prev_b:
            return "hash"
        prev_b = b
    if same:
        return "zip"
    return "merge" if sorted_a and sorted_b else "hash"


def _rows(reader: LabelDir, groups: Sequence[Group]) -> Iterator[tuple[dict, tuple[int, int]]]:
    for table, grp in iter_tables(reader, groups, JOIN_COLUMNS):
        for i, row in enumerate(table.to_pylist()):
            yield row, (grp.shard, grp.first_row + i)


def join(
    reader_a: LabelDir, groups_a: Sequence[Group], reader_b: LabelDir,
    groups_b: Sequence[Group], counts: JoinCounts, *, sampled: bool = False,
    partition_rows: int = 5000, workdir: Path | None = None,
) -> Iterator[Pair]:
    """Yield (row_a, position_a, row_b, position_b) for every image_id in both sets."""
    method = "hash" if sampled else check_order(reader_a, groups_a, reader_b, groups_b)
    counts.method = method
    log.info("joining the two label sets by image_id (%s join)", method)
    if method == "zip":
        for (a, pa_), (b, pb) in zip(_rows(reader_a, groups_a), _rows(reader_b, groups_b)):
            counts.joined += 1
            yield a, pa_, b, pb
    elif method == "merge":
        yield from _merge(_rows(reader_a, groups_a), _rows(reader_b, groups_b), counts)
    else:
        rows_a = sum(g.rows for g in groups_a)
        k = min(MAX_PARTITIONS, max(1, math.ceil(rows_a / partition_rows)))
        yield from _hash_join(reader_a, groups_a, reader_b, groups_b, counts, k,
                              sampled, workdir)


def _merge(rows_a: Iterator, rows_b: Iterator, counts: JoinCounts) -> Iterator[Pair]:
    a, b = next(rows_a, None), next(rows_b, None)
    while a is not None and b is not None:
        ia, ib = a[0]["image_id"], b[0]["image_id"]
        if ia == ib:
            counts.joined += 1
            yield a[0], a[1], b[0], b[1]
            a, b = next(rows_a, None), next(rows_b, None)
        elif ia < ib:
            counts.missing("a", ia)
            a = next(rows_a, None)
        else:
            counts.missing("b", ib)
            b = next(rows_b, None)
    for rest, side in ((a, "a"), (b, "b")):
        if rest is not None:
            counts.missing(side, rest[0]["image_id"])
    for row, _ in rows_a:
        counts.missing("a", row["image_id"])
    for row, _ in rows_b:
        counts.missing("b", row["image_id"])


def partition_of(image_ids: Iterable[str], k: int) -> np.ndarray:
    """Stable partition index of each image id (crc32 modulo k)."""
    return np.fromiter((zlib.crc32(i.encode()) % k for i in image_ids), dtype=np.int64)


def _spill(reader: LabelDir, groups: Sequence[Group], folder: Path, k: int,
           keep: pa.Array | None) -> None:
    """Write the join columns (+ positions) of every row to folder/part-K.arrow."""
    folder.mkdir(parents=True)
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    try:
        for table, grp in iter_tables(reader, groups, JOIN_COLUMNS):
            n = table.num_rows
            table = table.append_column("__shard", pa.array(np.full(n, grp.shard, np.int64)))
            table = table.append_column("__row", pa.array(np.arange(n, dtype=np.int64) + grp.first_row))
            if keep is not None:
                table = table.filter(pc.is_in(table.column("image_id"), value_set=keep))
            parts = partition_of(table.column("image_id").to_pylist(), k)
            for p in np.unique(parts).tolist():
                if p not in writers:
                    writers[p] = pa.ipc.new_stream(str(folder / f"part-{p:03d}.arrow"), table.schema)
                writers[p].write_table(table.take(np.flatnonzero(parts == p)))
    finally:
        for w in writers.values():
            w.close()


def _load(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    with pa.ipc.open_stream(pa.memory_map(str(path))) as stream:
        return stream.read_all()


def _hash_join(reader_a, groups_a, reader_b, groups_b, counts, k, sampled, workdir) -> Iterator[Pair]:
    with tempfile.TemporaryDirectory(prefix="c2fmae-report-join-", dir=workdir) as tmp:
        keep = None
        if sampled:  # only the sampled ids of A are wanted from B
            ids = [i for t, _ in iter_tables(reader_a, groups_a, ["image_id"])
                   for i in t.column("image_id").to_pylist()]
            keep = pa.array(ids, pa.string())
        _spill(reader_a, groups_a, Path(tmp) / "a", k, None)
        _spill(reader_b, groups_b, Path(tmp) / "b", k, keep)
        for p in range(k):
            a = _load(Path(tmp) / "a" / f"part-{p:03d}.arrow")
            b = _load(Path(tmp) / "b" / f"part-{p:03d}.arrow")
            index = {} if b is None else {i: j for j, i in enumerate(b.column("image_id").to_pylist())}
            for row in _pylist_chunks(a):
                j = index.pop(row["image_id"], None)
                pos_a = (row.pop("__shard"), row.pop("__row"))
                if j is None:
                    counts.missing("a", row["image_id"])
                    continue
                row_b = b.slice(j, 1).to_pylist()[0]
                pos_b = (row_b.pop("__shard"), row_b.pop("__row"))
                counts.joined += 1
                yield row, pos_a, row_b, pos_b
            for image_id in index:
                counts.missing("b", image_id)


def _pylist_chunks(table: pa.Table | None, size: int = 256) -> Iterator[dict[str, Any]]:
    """Rows of a table as dicts, converting `size` rows at a time."""
    if table is None:
        return
    for batch in table.to_batches(max_chunksize=size):
        yield from batch.to_pylist()
