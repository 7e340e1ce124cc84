"""Streaming reads of a label directory, with a resumable position.

``LabelReader(dir).rows()`` yields ``(row, position)`` pairs, one row group in memory at a
time; ``position`` is where the *next* row is, so saving it after consuming a row and
passing it back as ``start`` resumes right after that row. Masks stay encoded in the row
dicts until asked for: :func:`semantic_map` and :func:`instance_map` decode them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataset import masks
from dataset.schema import LABEL_COLUMNS, STATUS_OK, check_schema, read_metadata
from dataset.shards import ShardError, list_shards, open_shard, read_manifest


@dataclass(frozen=True, order=True)
class Position:
    """Next row to read: index into the reader's shard list, and row within that shard."""

    shard: int = 0
    row: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"shard": self.shard, "row": self.row}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Position:
        return cls(int(d["shard"]), int(d["row"]))


class LabelReader:
    """Reads the shards of one label directory (or an explicit list of shard files)."""

    def __init__(
        self, source: str | Path | Sequence[str | Path],
        columns: Sequence[str] = LABEL_COLUMNS, check: bool = True,
    ):
        if isinstance(source, (str, Path)):
            self.root: Path | None = Path(source)
            self.paths = list_shards(self.root)
            if not self.paths:
                raise ShardError(f"{self.root}: no shards (expected shards/part-*.parquet)")
            self.manifest = read_manifest(self.root)
        else:
            self.root, self.paths, self.manifest = None, [Path(p) for p in source], None
        self.columns = list(columns)
        # Only footers are kept (rows per row group); files are opened while being read, so
        # a reader over thousands of shards holds no file handles or Parquet metadata.
        self.row_groups: list[list[int]] = []
        self.metadata: dict[str, Any] = {}
        for path in self.paths:
            f = open_shard(path)
            if check:
                problems = check_schema(f.schema_arrow)
                if problems:
                    raise ShardError(f"{path}: {problems[0]}")
            if not self.metadata:
                self.metadata = read_metadata(f.schema_arrow)
            self.row_groups.append([f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)])
            f.close()

    def __len__(self) -> int:
        return sum(map(sum, self.row_groups))

    @property
    def input_root(self) -> str | None:
        return self.metadata.get("input_root")

    @property
    def semantic_vocab(self) -> dict[int, str]:
        return self.metadata["vocabularies"]["semantic"]

    def shard_rows(self) -> list[int]:
        return [sum(groups) for groups in self.row_groups]

    def batches(
        self, start: Position = Position(), shards: Sequence[int] | None = None,
    ) -> Iterator[tuple[pa.Table, Position]]:
        """Yield (table of one row group, position of its first row).

        `shards` restricts reading to those shard indices (e.g. one rank's share);
        shards before `start.shard` are skipped, and rows before `start.row` in it.
        """
        order = range(len(self.paths)) if shards is None else shards
        for s in order:
            if s < start.shard:
                continue
            skip, first = (start.row if s == start.shard else 0), 0
            f = None
            try:
                for g, n in enumerate(self.row_groups[s]):
                    if first + n > skip:
                        f = f or open_shard(self.paths[s])
                        try:
                            table = f.read_row_group(g, columns=self.columns)
                        except (pa.ArrowException, OSError) as exc:
                            raise ShardError(f"{self.paths[s]}: row group {g} unreadable ({exc})") from None
                        offset = max(skip - first, 0)
                        yield table.slice(offset), Position(s, first + offset)
                    first += n
            finally:
                if f is not None:
                    f.close()

    def rows(
        self, start: Position = Position(), shards: Sequence[int] | None = None,
        only_ok: bool = False,
    ) -> Iterator[tuple[dict[str, Any], Position]]:
        """Yield (row dict, position of the next row)."""
        for table, pos in self.batches(start, shards):
            for i, row in enumerate(table.to_pylist()):
                nxt = Position(pos.shard, pos.row + i + 1)
                if only_ok and row["status"] != STATUS_OK:
                    continue
                yield row, nxt

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row, _ in self.rows():
            yield row


def semantic_map(row: dict[str, Any], size: tuple[int, int] | None = None) -> np.ndarray:
    """The row's semantic label map (int32, -1 unlabeled) at original size or `size` (h, w)."""
    return masks.semantic_map(row["semantic"] or [], row["height"], row["width"], size)


def instance_map(row: dict[str, Any], size: tuple[int, int] | None = None) -> np.ndarray:
    """The row's instance-id map (int32, 0 none, i+1 = instances[i]; smaller wins overlaps)."""
    return masks.instance_map(row["instances"] or [], row["height"], row["width"], size)


def instance_masks(row: dict[str, Any]) -> np.ndarray:
    """All instance masks of the row, bool [N, H, W] at original size."""
    if not row["instances"]:
        return np.zeros((0, row["height"], row["width"]), dtype=bool)
    stack = masks.decode_many([e["counts"] for e in row["instances"]], row["height"], row["width"])
    return stack.transpose(2, 0, 1).astype(bool)
