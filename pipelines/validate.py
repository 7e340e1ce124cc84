"""`c2fmae validate DIR`: exit 0 when the label directory is clean, else one line per problem."""

from __future__ import annotations

import argparse
import os
import sys

from dataset.shards import ShardError, rebuild_manifest
from dataset.validate import validate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="label directory (holds manifest.json and shards/)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes checking shards in parallel (default: %(default)s)")
    p.add_argument("--max-problems", type=int, default=200,
                   help="print at most this many problem lines (default: %(default)s)")
    p.add_argument("--fix-manifest", action="store_true",
                   help="rebuild manifest.json from the shard files before checking")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.fix_manifest:
        try:
            rebuild_manifest(args.directory)
        except (ShardError, ValueError) as exc:
            print(f"c2fmae validate: error: {exc}", file=sys.stderr)
            return 2
    rows, problems = validate(args.directory, workers=args.workers, progress=not args.quiet)
    for line in problems[: args.max_problems]:
        print(line)
    if len(problems) > args.max_problems:
        print(f"... and {len(problems) - args.max_problems} more problems")
    if problems:
        print(f"c2fmae validate: {args.directory}: {len(problems)} problem(s) in {rows} rows",
              file=sys.stderr)
        return 1
    print(f"{args.directory}: {rows} rows, all checks passed")
    return 0
