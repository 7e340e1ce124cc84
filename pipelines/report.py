"""`c2fmae report DIR --out REPORT_DIR`: label quality report (summary.json + report.html).

Options map onto labeling.report.ReportConfig; its remaining fields (seed, thumbnail,
top_categories, partition_rows) are set with key=value overrides, e.g.
``c2fmae report out/labels --out out/report --set thumbnail=256 top_categories=30``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

log = logging.getLogger(__name__)

FLAG_FIELDS = {"labels", "out", "compare", "ground_truth", "gt_mapping", "images", "sample",
               "worst_metric", "gallery"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="label directory (manifest.json + shards/)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                   metavar="KEY=VALUE",
                   help="other ReportConfig fields: seed, thumbnail, top_categories, partition_rows")
    p.add_argument("--out", required=True, help="report folder (gets report.html, summary.json)")
    p.add_argument("--compare", metavar="OTHER_DIR",
                   help="a second label directory of the same images: figures side by side "
                        "and per-image agreement")
    p.add_argument("--ground-truth", metavar="GT_DIR",
                   help="PNG label maps at GT_DIR/<image_id with .png>: mIoU and per-class IoU")
    p.add_argument("--gt-mapping", metavar="FILE",
                   help="YAML/JSON mapping pseudo categories to GT ids (default: identity)")
    p.add_argument("--images", metavar="DIR",
                   help="image root for the overlays (default: the input root in the metadata)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="read only N rows (random row groups, seeded) for a quick look")
    p.add_argument("--worst-metric", default="semantic_confidence", metavar="NAME",
                   help="quality metric for the 'worst' gallery; NAME:high or NAME:low says "
                        "which end is bad (default: %(default)s)")
    p.add_argument("--gallery", type=int, default=12, metavar="N",
                   help="images per gallery (default: %(default)s)")


def config_from_args(args: argparse.Namespace):
    from labeling.report import ReportConfig

    values = {"labels": args.directory, "out": args.out, "compare": args.compare,
              "ground_truth": args.ground_truth, "gt_mapping": args.gt_mapping,
              "images": args.images, "sample": args.sample,
              "worst_metric": args.worst_metric, "gallery": args.gallery}
    fields = {f.name: f for f in dataclasses.fields(ReportConfig)}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        if key not in fields or key in FLAG_FIELDS:
            other = sorted(set(fields) - FLAG_FIELDS)
            raise ValueError(f"unknown override {key!r}; settable: {', '.join(other)}")
        values[key] = int(raw) if fields[key].type in ("int", int) else raw
    return ReportConfig(**values)


def run(args: argparse.Namespace) -> int:
    from dataset.shards import ShardError
    from labeling.report import build_report

    try:
        cfg = config_from_args(args)
        summary = build_report(cfg)
    except (ShardError, ValueError, FileNotFoundError) as exc:
        print(f"c2fmae report: error: {exc}", file=sys.stderr)
        return 2
    a = summary["sets"]["A"]["totals"]
    print(f"{cfg.out}/report.html: {a['rows']} rows ({a['ok']} ok, {a['error']} failed)"
          + (f", compared with {cfg.compare}" if cfg.compare else "")
          + (f", mIoU {summary['ground_truth']['miou']:.3f}"
             if summary.get("ground_truth", {}).get("miou") is not None else ""))
    return 0
