"""Deep checks of a label directory: everything a reader relies on, one line per problem.

Checked: every shard opens as Parquet with this schema version; the manifest agrees with
the files (rows, sizes, checksums); each row has a known status and sane size; every RLE
is well formed and decodes to exactly height x width; stored areas and boxes agree with
the masks; semantic masks of a row are disjoint with unique categories; category ids are
in the vocabulary; image ids are unique across all shards.

RLE strings are parsed (dataset.masks.counts_runs) before pycocotools sees them:
pycocotools trusts the run lengths and writes past its buffer when they sum to more than
height x width.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from dataset.masks import counts_runs
from dataset.schema import STATUS_ERROR, STATUS_OK, check_schema, read_metadata
from dataset.shards import MANIFEST, ShardError, _sha256, list_shards, open_shard, read_manifest

BOX_TOLERANCE = 1e-3


@dataclass
class ShardReport:
    name: str
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    id_hashes: list[int] = field(default_factory=list)


def _id_hash(image_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "little")


def _check_rle(counts: bytes, h: int, w: int, what: str) -> str | None:
    try:
        total = int(counts_runs([counts])[0].sum())
    except ValueError as exc:
        return f"{what}: malformed RLE ({exc})"
    if total != h * w:
        return f"{what}: RLE covers {total} pixels, image is {h}x{w}={h * w}"
    return None


def _check_masks(row: dict[str, Any], vocab: dict[str, dict[int, str]], where: str) -> Iterator[str]:
    h, w = row["height"], row["width"]
    for kind in ("semantic", "instances"):
        entries = row[kind] or []
        known = vocab.get("semantic" if kind == "semantic" else "instance", {})
        good = []
        for i, e in enumerate(entries):
            what = f"{where}: {kind}[{i}]"
            bad = _check_rle(e["counts"], h, w, what)
            if bad:
                yield bad
                continue
            good.append(e)
            rle = {"size": [h, w], "counts": e["counts"]}
            area = int(mask_utils.area(rle))
            if area != e["area"]:
                yield f"{what}: area says {e['area']}, mask has {area} pixels"
            if kind == "instances":
                box = mask_utils.toBbox(rle)
                if e["bbox"] is None or np.abs(np.asarray(e["bbox"]) - box).max() > BOX_TOLERANCE:
                    yield f"{what}: bbox {e['bbox']} differs from the mask's box {box.tolist()}"
            cat = e["category_id"]
            if known and cat not in known and not (kind == "instances" and cat == -1):
                yield f"{what}: category_id {cat} is not in the {kind} vocabulary"
        if kind == "semantic" and good:
            cats = [e["category_id"] for e in good]
            if len(set(cats)) != len(cats):
                yield f"{where}: semantic categories repeat ({sorted(cats)})"
            stack = mask_utils.decode([{"size": [h, w], "counts": e["counts"]} for e in good])
            overlap = int((stack.sum(-1, dtype=np.int32) > 1).sum())
            if overlap:
                yield f"{where}: semantic masks overlap on {overlap} pixels"


def _check_row(row: dict[str, Any], vocab, where: str) -> Iterator[str]:
    status = row["status"]
    if status == STATUS_ERROR:
        if not row["error"]:
            yield f"{where}: status 'error' without a reason"
        return
    if status != STATUS_OK:
        yield f"{where}: unknown status {status!r}"
        return
    if row["height"] <= 0 or row["width"] <= 0:
        yield f"{where}: bad size {row['height']}x{row['width']}"
        return
    yield from _check_masks(row, vocab, where)


def check_shard(path: str | Path) -> ShardReport:
    """All problems of one shard file (never raises on bad data)."""
    path = Path(path)
    report = ShardReport(path.name)
    try:
        pf = open_shard(path)
    except ShardError as exc:
        report.problems.append(str(exc))
        return report
    problems = check_schema(pf.schema_arrow)
    if problems:
        report.problems.extend(f"{path.name}: {p}" for p in problems)
        return report
    vocab = read_metadata(pf.schema_arrow)["vocabularies"]
    columns = [c for c in pf.schema_arrow.names if c != "image_bytes"]
    index = 0
    try:
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            for row in batch.to_pylist():
                where = f"{path.name} row {index} ({row['image_id']})"
                report.problems.extend(_check_row(row, vocab, where))
                report.id_hashes.append(_id_hash(row["image_id"]))
                index += 1
    except Exception as exc:  # a corrupt page shows up only when read
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.problems.append(f"{path.name}: unreadable after row {index} ({reason})")
    report.rows = index
    return report


def _check_manifest(root: Path, paths: list[Path], reports: dict[str, ShardReport]) -> Iterator[str]:
    try:
        manifest = read_manifest(root)
    except ShardError as exc:
        yield str(exc)
        return
    if manifest is None:
        yield f"{root / MANIFEST}: missing (run `c2fmae validate --fix-manifest` to rebuild it)"
        return
    listed = {s["name"]: s for s in manifest.get("shards", [])}
    on_disk = {p.name: p for p in paths}
    for name in sorted(set(listed) - set(on_disk)):
        yield f"{MANIFEST}: lists {name}, which is not on disk"
    for name in sorted(set(on_disk) - set(listed)):
        yield f"{MANIFEST}: does not list {name}"
    for name in sorted(set(listed) & set(on_disk)):
        entry, path = listed[name], on_disk[name]
        if entry.get("bytes") != path.stat().st_size or entry.get("sha256") != _sha256(path):
            yield f"{MANIFEST}: size or sha256 of {name} differs from the file"
        elif name in reports and entry.get("rows") != reports[name].rows:
            yield f"{MANIFEST}: says {name} has {entry.get('rows')} rows, it has {reports[name].rows}"


def validate(directory: str | Path, workers: int = 1, progress: bool = True) -> tuple[int, list[str]]:
    """(rows checked, problems) for a label directory."""
    root = Path(directory)
    try:
        paths = list_shards(root)
    except ShardError as exc:
        return 0, [str(exc)]
    if not paths:
        return 0, [f"{root}: no shards (expected shards/part-*.parquet)"]
    from tqdm import tqdm

    bar = tqdm(total=len(paths), desc="validate", unit="shard", disable=not progress)
    reports: dict[str, ShardReport] = {}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for rep in pool.map(check_shard, paths):
                reports[rep.name] = rep
                bar.update()
    else:
        for p in paths:
            reports[p.name] = check_shard(p)
            bar.update()
    bar.close()
    problems = [p for rep in reports.values() for p in rep.problems]
    problems.extend(_check_manifest(root, paths, reports))
    problems.extend(_duplicate_ids(reports, paths))
    return sum(r.rows for r in reports.values()), problems


def _duplicate_ids(reports: dict[str, ShardReport], paths: list[Path]) -> list[str]:
    hashes = np.concatenate([np.asarray(r.id_hashes, dtype=np.uint64) for r in reports.values()])
    uniq, counts = np.unique(hashes, return_counts=True)
    dup = set(uniq[counts > 1].tolist())
    if not dup:
        return []
    # Second pass over the id column only, to name the duplicates and where they are.
    seen: dict[str, list[str]] = {}
    for p in paths:
        try:
            ids = open_shard(p).read(columns=["image_id"]).column(0).to_pylist()
        except Exception:  # already reported as unreadable
            continue
        for image_id in ids:
            if _id_hash(image_id) in dup:
                seen.setdefault(image_id, []).append(p.name)
    return [f"image_id {i!r} appears {len(s)} times ({', '.join(sorted(set(s)))})"
            for i, s in sorted(seen.items()) if len(s) > 1]
