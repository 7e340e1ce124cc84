"""The report job: scan one (or two) label directories, then write summary.json and report.html.

Passes over the data, each streaming one row group at a time:
1. statistics of set A (and the ground-truth confusion matrix, if asked) -- one pass;
2. with --compare: statistics of set B, then the image_id join of A and B (labeling/report/join.py);
3. galleries: the few chosen rows are read again by position and drawn.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dataset.shards import atomic_write_bytes
from labeling.report import overlay
from labeling.report.collect import LabelStats, WorstMetric
from labeling.report.compare import Agreement
from labeling.report.groundtruth import GroundTruthScore, GtMapping, gt_path
from labeling.report.join import JoinCounts, join
from labeling.report.scan import (
    SCAN_COLUMNS,
    Group,
    LabelDir,
    iter_tables,
    pick_groups,
    read_rows_at,
    resolve_image_root,
)

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    labels: str
    out: str
    compare: str | None = None  # a second label directory of the same images
    ground_truth: str | None = None  # folder of PNG label maps, <image_id>.png
    gt_mapping: str | None = None  # YAML/JSON: pseudo category -> GT id (default identity)
    images: str | None = None  # image root for the overlays (default: the recorded input root)
    sample: int | None = None  # only this many rows (random row groups) for a quick look
    worst_metric: str = "semantic_confidence"  # NAME or NAME:high / NAME:low
    gallery: int = 12  # images per gallery
    top_categories: int = 20
    seed: int = 0
    thumbnail: int = 256  # longest side of an overlay, pixels
    partition_rows: int = 5000  # hash-join partition size (rows per side in memory)

    def check(self) -> None:
        if self.gallery < 0:
            raise ValueError(f"--gallery must be >= 0, got {self.gallery}")
        if self.sample is not None and self.sample <= 0:
            raise ValueError(f"--sample must be a positive number of rows, got {self.sample}")
        if self.thumbnail < 16:
            raise ValueError(f"thumbnail must be at least 16 pixels, got {self.thumbnail}")
        WorstMetric.parse(self.worst_metric)


@dataclass
class LabelSet:
    """One scanned label directory and what the page needs of it."""

    name: str
    path: str
    reader: LabelDir
    groups: list[Group]
    stats: LabelStats
    image_root: Path | None
    summary: dict[str, Any]


def scan_set(name: str, reader: LabelDir, cfg: ReportConfig,
             gt: GroundTruthScore | None = None, images: str | None = None) -> LabelSet:
    path = str(reader.root)
    worst = WorstMetric.parse(cfg.worst_metric)
    groups = pick_groups(reader.groups, cfg.sample, cfg.seed)
    stats = LabelStats(cfg.gallery, worst, cfg.seed)
    rows = sum(g.rows for g in groups)
    log.info("set %s: reading %d of %d rows from %s", name, rows, len(reader), path)
    with tqdm(total=rows, unit="rows", desc=f"report {name}", leave=False) as bar:
        columns = SCAN_COLUMNS if gt is not None else reader.stats_columns  # GT decodes masks
        for table, grp in iter_tables(reader, groups, columns):
            stats.update(table, grp.shard, grp.first_row)
            if gt is not None:
                _score_ground_truth(gt, table)
            bar.update(table.num_rows)
    meta = reader.metadata
    vocab = meta["vocabularies"]["semantic"]
    summary = {
        "path": str(path), "rows_in_directory": len(reader), "rows_read": rows,
        "sampled": cfg.sample is not None,
        "schema_version": meta.get("schema_version"), "code_version": meta.get("code_version"),
        "producers": meta.get("producers", []), "input_root": meta.get("input_root"),
        "disk": reader.disk_usage(),
        **stats.to_dict(vocab, meta["vocabularies"].get("classes", {})),
    }
    summary["worst_metric"] = worst.describe()
    root = resolve_image_root(reader, images)
    return LabelSet(name, str(path), reader, groups, stats, root, summary)


def _score_ground_truth(gt: GroundTruthScore, table) -> None:
    """Rows that have a GT file are converted to dicts and scored; others are only counted."""
    ids = table.column("image_id").to_pylist()
    for i, image_id in enumerate(ids):
        if gt_path(gt.root, image_id).is_file():
            gt.update(table.slice(i, 1).to_pylist()[0])
        else:
            gt.without_gt += 1


def draw_gallery(label_set: LabelSet, picks: list[dict[str, Any]], cfg: ReportConfig,
                 caption: str | None = None) -> list[dict[str, Any]]:
    """Overlays of picked rows ({"image_id", "position", ...}); rows re-read by position."""
    columns = list(SCAN_COLUMNS) + (["image_bytes"] if label_set.reader.image_bytes else [])
    rows = read_rows_at(label_set.reader, [tuple(p["position"]) for p in picks], columns)
    vocab = label_set.reader.semantic_vocab
    out = []
    for pick in picks:
        row = rows[tuple(pick["position"])]
        item = overlay.render(row, label_set.image_root, vocab, cfg.thumbnail)
        extra = {k: v for k, v in pick.items() if k not in ("position", "image_id")}
        out.append({"overlay": item, "class_index": row["class_index"],
                    "class_name": label_set.reader.classes.get(row["class_index"], ""), **extra})
    return out


def compare_sets(a: LabelSet, b: LabelSet, cfg: ReportConfig, workdir: Path) -> dict[str, Any]:
    counts = JoinCounts()
    agreement = Agreement(a.reader.semantic_vocab, b.reader.semantic_vocab, cfg.gallery)
    pairs = join(a.reader, a.groups, b.reader, b.reader.groups, counts,
                 sampled=cfg.sample is not None, partition_rows=cfg.partition_rows,
                 workdir=workdir)
    for row_a, pos_a, row_b, pos_b in tqdm(pairs, unit="pairs", desc="compare", leave=False):
        agreement.update(row_a, pos_a, row_b, pos_b)
    result = {"join": asdict(counts), **agreement.to_dict()}
    gallery = []
    for _, item in agreement.worst.items():
        gallery.append({
            "image_id": item["image_id"],
            "semantic_agreement": item["semantic_agreement"],
            "instance_agreement": item["instance_agreement"],
            "a": overlay.render(item["row_a"], a.image_root, a.reader.semantic_vocab, cfg.thumbnail),
            "b": overlay.render(item["row_b"], b.image_root, b.reader.semantic_vocab, cfg.thumbnail),
        })
    return {"summary": result, "gallery": gallery}


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    """Write cfg.out/summary.json and cfg.out/report.html; returns the summary."""
    from labeling.report import page  # matplotlib is imported only here

    cfg.check()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # open everything first, so a bad argument fails before the long pass
    readers = [LabelDir(cfg.labels)] + ([LabelDir(cfg.compare)] if cfg.compare else [])
    gt = None
    if cfg.ground_truth is not None:
        mapping = GtMapping.load(cfg.gt_mapping, readers[0].semantic_vocab)
        gt = GroundTruthScore(Path(cfg.ground_truth), mapping)
    sets = [scan_set(name, reader, cfg, gt if name == "A" else None, cfg.images)
            for name, reader in zip("AB", readers)]
    galleries = {}
    for s in sets:
        galleries[s.name] = {
            "sample": draw_gallery(s, [i for _, i in s.stats.sample.items()], cfg),
            "worst": draw_gallery(s, [i for _, i in s.stats.worst.items()], cfg),
        }
    summary: dict[str, Any] = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "sets": {s.name: s.summary for s in sets},
    }
    comparison = compare_sets(sets[0], sets[1], cfg, out) if len(sets) > 1 else None
    if comparison is not None:
        summary["compare"] = comparison["summary"]
    if gt is not None:
        summary["ground_truth"] = gt.to_dict()
    summary["missing_images"] = _missing_images(galleries, comparison)
    html = page.render_page(summary, galleries, comparison, cfg)
    text = json.dumps(_finite(summary), indent=1, default=_json_default, allow_nan=False)
    for name, data in (("summary.json", text.encode()), ("report.html", html.encode())):
        atomic_write_bytes(out / name, data)
        (out / name).chmod(0o644)
    log.info("report written to %s (report.html, summary.json)", out)
    return summary


def _missing_images(galleries: dict, comparison: dict | None) -> dict[str, Any]:
    """Gallery images whose photo could not be loaded, with the reason (not an error)."""
    missing: dict[str, str] = {}
    for per_set in galleries.values():
        for items in per_set.values():
            for item in items:
                if item["overlay"].missing:
                    missing[item["overlay"].image_id] = item["overlay"].note
    for item in (comparison or {}).get("gallery", []):
        for side in ("a", "b"):
            if item[side].missing:
                missing[item[side].image_id] = item[side].note
    return {"count": len(missing), "images": dict(sorted(missing.items())[:50])}


def _finite(value: Any) -> Any:
    """The summary with NaN and infinities replaced by null (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
