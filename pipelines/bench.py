"""`c2fmae bench NAME [args...]`: run one benchmark module (pipelines/benchmarks/NAME.py).

`c2fmae bench all` runs each CPU benchmark with its defaults. Every benchmark prints a
markdown table; the numbers are recorded by hand in BENCHMARKS.md with date and machine.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import pipelines.benchmarks as benchmarks


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help=f"benchmark: all, {', '.join(available())}")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def run(args: argparse.Namespace) -> int:
    names = available() if args.name == "all" else [args.name]
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"c2fmae bench: error: unknown benchmark {unknown[0]!r}; known: "
              f"{', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n## bench {name}\n", flush=True)
        importlib.import_module(f"pipelines.benchmarks.{name}").main(args.rest if args.name != "all" else [])
    return 0
