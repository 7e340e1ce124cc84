"""The `c2fmae` command line: one subcommand per job.

Each subcommand lives in its own module, named in COMMANDS, which exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when
their subcommand runs, so `c2fmae validate` never pays for importing torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "labels": ("pipelines.labels", "run the segmenters over an image folder and write label shards"),
    "validate": ("pipelines.validate", "check label shards: schema, masks, areas, boxes, ids"),
    "export-coco": ("pipelines.export_coco", "write a COCO-format JSON of (a subset of) the labels"),
    "report": ("pipelines.report", "label quality report: statistics, plots, overlay galleries"),
    "pretrain": ("pipelines.pretrain", "pre-train a C2FMAE / MAE model from label shards"),
    "export-timm": ("pipelines.export_timm", "export a checkpoint's encoder as timm ViT weights"),
    "eval-knn": ("pipelines.evaluate", "k-NN classification of encoder features"),
    "eval-linear": ("pipelines.evaluate", "linear probe on encoder features"),
    "bench": ("pipelines.bench", "run the benchmarks (results go in BENCHMARKS.md)"),
}


def _load(name: str):
    module_name = COMMANDS[name][0]
    return importlib.import_module(module_name)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c2fmae", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported
            module = _load(name)
            add = getattr(module, f"add_{name.replace('-', '_')}_arguments", None)
            (add or module.add_arguments)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = _load(args.command)
    runner = getattr(module, f"run_{args.command.replace('-', '_')}", None) or module.run
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("c2fmae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
