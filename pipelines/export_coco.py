"""`c2fmae export-coco DIR --out FILE [--limit N] [--kind instances|semantic]`."""

from __future__ import annotations

import argparse
import sys

from dataset.coco import export_coco
from dataset.shards import ShardError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="label directory")
    p.add_argument("--out", required=True, help="COCO JSON file to write")
    p.add_argument("--limit", type=int, default=None, help="first N ok images only")
    p.add_argument("--kind", choices=["instances", "semantic"], default="instances",
                   help="which masks become annotations (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        counts = export_coco(args.directory, args.out, args.limit, args.kind)
    except (ShardError, ValueError, OSError) as exc:
        print(f"c2fmae export-coco: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['images']} images, {counts['annotations']} annotations, "
          f"{counts['categories']} categories")
    return 0
