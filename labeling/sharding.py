"""Cutting the image list into shards, and what a rerun may reuse of an existing output.

Shard k holds images [k * shard_size, (k + 1) * shard_size) of the sorted input list, so
shard names depend only on the list and the shard size. A shard file's existence marks it
done (files appear only complete, see dataset/shards.py). Before reusing an output folder,
`check_output` makes sure its finished shards were made from the same list and with a
config that gives the same labels; otherwise the run stops with one line saying why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset.schema import read_metadata
from dataset.shards import (
    SHARD_DIR,
    ShardError,
    ShardInfo,
    list_shards,
    open_shard,
    read_manifest,
    shard_info,
    shard_name,
    shard_path,
)
from labeling.config import LabelingConfig, from_dict
from labeling.images import ImageRecord

log = logging.getLogger(__name__)


@dataclass
class Shard:
    index: int
    start: int  # position of its first image in the full list
    records: list[ImageRecord]

    @property
    def name(self) -> str:
        return shard_name(self.index)


def plan_shards(records: list[ImageRecord], shard_size: int) -> list[Shard]:
    return [
        Shard(k, start, records[start:start + shard_size])
        for k, start in enumerate(range(0, len(records), shard_size))
    ]


def remove_stale_temp_files(output: str | Path) -> int:
    """Delete half-written shard temp files left by a killed run; returns how many."""
    stale = list((Path(output) / SHARD_DIR).glob(".part-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d unfinished temp file(s) of an interrupted run", len(stale))
    return len(stale)


def _config_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return from_dict(meta.get("config") or {}).output_affecting()
    except (ValueError, TypeError):
        return None


def check_output(output: str | Path, shards: list[Shard], config: LabelingConfig) -> set[int]:
    """Indices of the shards already finished in `output`; ValueError if they do not belong.

    A finished shard belongs to this run when it was written with the same label-affecting
    config and holds exactly this run's image ids for its index.
    """
    root = Path(output)
    if not (root / SHARD_DIR).is_dir():
        return set()
    done = set()
    expected = {s.name: s for s in shards}
    for path in list_shards(root):
        shard = expected.get(path.name)
        if shard is None:
            raise ValueError(
                f"{path} is not part of this run (the input gives {len(shards)} shards of "
                f"{config.shard_size}); use another --output or the input/limit that made it"
            )
        f = open_shard(path)
        try:
            meta = read_metadata(f.schema_arrow)
        except ValueError as exc:
            raise ShardError(f"{path}: {exc}") from None
        if _config_of(meta) != config.output_affecting():
            raise ValueError(
                f"{path} was written with a different labeling config; use another --output "
                "or the same profile/config/overrides as the run that made it"
            )
        ids = f.read(columns=["image_id"]).column("image_id").to_pylist()
        if ids != [r.image_id for r in shard.records]:
            raise ValueError(
                f"{path} holds other images than shard {shard.index} of this input list "
                "(did the input folder, --limit or shard_size change?)"
            )
        done.add(shard.index)
    return done


def existing_infos(output: str | Path, indices: set[int]) -> dict[int, ShardInfo]:
    """Manifest entries of finished shards: from manifest.json when it matches, else read."""
    old = {}
    try:
        manifest = read_manifest(output) or {}
        old = {e["name"]: ShardInfo(**e) for e in manifest.get("shards", [])}
    except (ShardError, TypeError, KeyError):
        pass
    infos = {}
    for index in sorted(indices):
        path = shard_path(output, index)
        entry = old.get(path.name)
        infos[index] = entry if entry and entry.bytes == path.stat().st_size else shard_info(path)
    return infos
