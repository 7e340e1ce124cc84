"""Report benchmark: time and peak memory of `c2fmae report` per 10k rows, at two sizes.

Synthetic label sets of realistic rows (500x375 images, 8 semantic categories, ~30
elliptical instance masks, 1% failed rows; 512 distinct label rows drawn at random, with
new ids, classes and quality values) are written as 1000-row shards; each size is then
reported in a fresh Python process, so the memory figures are that run's alone:
- RSS growth: ru_maxrss at the end minus RSS after the imports (the process high-water mark);
- tracemalloc peak: Python and numpy allocations (a second, traced run);
- Arrow peak: the pyarrow memory pool's high-water mark.
Memory must not grow with the number of rows; time per 10k rows is the marginal cost
(difference between the two sizes), so fixed costs (plots, galleries) cancel out.

Modes: `report` (one set), `compare-zip` (A vs a copy in the same order: streaming zip
join) and `compare-hash` (A vs a shuffled copy: partitioned hash join, spilled to disk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POOL = 512  # distinct label rows, replicated with new ids, classes and quality values
H, W = 375, 500
SHARD_ROWS = 1000


def _ellipse(rng, h: int, w: int, scale: float) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(0.02, scale) * h, rng.uniform(0.02, scale) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def pool_rows(rng) -> list[dict]:
    """POOL label rows with 8 semantic categories and ~30 instance masks each."""
    from dataset import masks

    rows = []
    for _ in range(POOL):
        sem = np.full((H, W), -1, np.int32)
        for cat in rng.choice(150, size=8, replace=False):
            sem[_ellipse(rng, H, W, 0.6)] = cat
        inst = np.stack([_ellipse(rng, H, W, 0.3) for _ in range(int(rng.integers(20, 40)))])
        encs = masks.encode_many(inst)
        rows.append({
            "height": H, "width": W, "status": "ok",
            "semantic": masks.semantic_entries(sem, {int(c): float(rng.uniform(0.4, 1)) for c in np.unique(sem)}),
            "instances": [{"counts": e["counts"], "bbox": e["bbox"], "area": e["area"],
                           "score": float(rng.uniform(0.8, 1)), "stability": float(rng.uniform(0.9, 1)),
                           "category_id": int(rng.integers(0, 150)), "source": "bench"} for e in encs],
        })
    return rows


def metadata() -> dict:
    from dataset.schema import file_metadata

    return file_metadata(semantic_vocab={i: f"category {i}" for i in range(150)},
                         classes={i: f"class {i}" for i in range(1000)})


def pool_table(seed: int = 0):
    from dataset.shards import rows_to_table

    rows = pool_rows(np.random.default_rng(seed))
    return rows_to_table([{"image_id": "", "class_index": 0, **r} for r in rows], metadata())


def write_label_set(directory: Path, rows: int, pool, seed: int = 0, shuffle: bool = False) -> None:
    """`rows` rows as 1000-row shards: pool rows taken at random, new ids/classes/quality."""
    import pyarrow as pa

    from dataset.schema import QUALITY_FIELDS, STATUS_ERROR
    from dataset.shards import rebuild_manifest, write_shard

    rng = np.random.default_rng(seed)
    meta = metadata()
    order = np.arange(rows)
    if shuffle:
        order = np.random.default_rng(seed + 1).permutation(rows)
    for s in range(0, rows, SHARD_ROWS):
        idx = order[s:s + SHARD_ROWS]
        table = pool.take(rng.integers(0, POOL, len(idx)))
        ids = [f"train/n{i % 1000:08d}/img_{i:08d}.JPEG" for i in idx]
        failed = rng.random(len(idx)) < 0.01
        table = table.set_column(0, "image_id", pa.array(ids, pa.string()))
        table = table.set_column(1, "class_index", pa.array(idx % 1000, pa.int32()))
        status = np.where(failed, STATUS_ERROR, "ok")
        table = table.set_column(4, "status", pa.array(status.tolist(), pa.string()))
        table = table.set_column(5, "error", pa.array(
            [f"cannot decode {i}: truncated" if f else None for i, f in zip(ids, failed)], pa.string()))
        quality = {k: rng.uniform(0, 1, len(idx)).astype(np.float32) for k in QUALITY_FIELDS
                   if not k.startswith("num_")}
        table = table.set_column(8, "quality", pa.StructArray.from_arrays(
            [pa.array(quality.get(k, np.zeros(len(idx), np.int32)), type=t) for k, t in QUALITY_FIELDS.items()],
            fields=list(table.schema.field("quality").type)))
        write_shard(directory, s // SHARD_ROWS, table.to_pylist(), meta)
    rebuild_manifest(directory)


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(labels: str, compare: str | None, out: str) -> dict:
    """One measured report run (called in a fresh process)."""
    import tracemalloc

    import pyarrow as pa

    import labeling.report.page  # noqa: F401  (imports matplotlib before the baseline)
    from labeling.report import ReportConfig, build_report

    cfg = ReportConfig(labels=labels, out=out, compare=compare, gallery=12)
    base = _rss_now_mb()
    seconds = []
    for _ in range(2):  # the faster of two runs: the VM is shared
        t0 = time.perf_counter()
        build_report(cfg)
        seconds.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    arrow_peak = pa.default_memory_pool().max_memory() / 2**20
    tracemalloc.start()
    build_report(cfg)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"seconds": min(seconds), "rss_growth_mb": peak - base, "tracemalloc_peak_mb": traced,
            "arrow_peak_mb": arrow_peak}


def measure(labels: Path, compare: Path | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "pipelines.benchmarks.report", "--worker", str(labels),
           str(out)] + ([str(compare)] if compare else [])
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"report worker failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="c2fmae bench report", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 40_000], metavar="N",
                   help="label set sizes, at least two (default: 10000 40000)")
    p.add_argument("--modes", default="report",
                   help="comma-separated: report, compare-zip, compare-hash (default: %(default)s)")
    p.add_argument("--workdir", help="where the synthetic sets go (default: a temp folder)")
    args = p.parse_args(argv)
    if len(args.rows) < 2:
        p.error("--rows needs at least two sizes (time per 10k rows is their difference)")
    modes = args.modes.split(",")
    unknown = set(modes) - {"report", "compare-zip", "compare-hash"}
    if unknown:
        p.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    results = []
    pool = pool_table()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="c2fmae-bench-report-") as tmp:
        for rows in args.rows:
            base = Path(tmp) / f"a{rows}"
            write_label_set(base, rows, pool)
            disk = sum(f.stat().st_size for f in (base / "shards").glob("*.parquet"))
            for mode in modes:
                other = None
                if mode != "report":
                    other = Path(tmp) / f"b{rows}-{mode}"
                    if not other.exists():
                        write_label_set(other, rows, pool, seed=1, shuffle=mode == "compare-hash")
                r = measure(base, other, Path(tmp) / f"out-{rows}-{mode}")
                results.append({"mode": mode, "rows": rows, "bytes_on_disk": disk, **r})
    _print_table(results)
    return {"results": results}


def _print_table(results: list[dict]) -> None:
    print("| mode | rows | label MB | seconds | s / 10k rows (marginal) | RSS growth MB "
          "| tracemalloc peak MB | Arrow pool peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    by_mode: dict[str, list[dict]] = {}
    for r in results:
        by_mode.setdefault(r["mode"], []).append(r)
    for mode, rs in by_mode.items():
        rs.sort(key=lambda r: r["rows"])
        for i, r in enumerate(rs):
            marginal = "–"
            if i > 0:
                prev = rs[i - 1]
                marginal = f"{(r['seconds'] - prev['seconds']) / (r['rows'] - prev['rows']) * 1e4:.2f}"
            print(f"| {mode} | {r['rows']:,} | {r['bytes_on_disk'] / 2**20:.0f} | {r['seconds']:.1f} "
                  f"| {marginal} | {r['rss_growth_mb']:.0f} | {r['tracemalloc_peak_mb']:.1f} "
                  f"| {r['arrow_peak_mb']:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        labels, out = sys.argv[2], sys.argv[3]
        compare = sys.argv[4] if len(sys.argv) > 4 else None
        print(json.dumps(worker(labels, compare, out)))
    else:
        main(sys.argv[1:])
