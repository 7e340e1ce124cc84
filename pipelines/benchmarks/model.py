"""Model benchmark: one training step of C2FMAE vs MAE on the same encoder and batch.

    c2fmae bench model                                   # CPU (1 thread), ViT-B/16, batch 8
    c2fmae bench model --device cuda --dtype bf16 --batch 128

A step is forward + backward + AdamW step. On a CPU the ratios use process CPU time (one
thread by default), which other jobs on a shared machine do not inflate; on a GPU, wall time. Models run one after another (only one is alive
at a time), for `--rounds` rounds; the table gives the median step time, images/s, the
C2FMAE/MAE ratio, the share of the C2FMAE step spent in masking (masking timed alone on
the same batch, at a progress where both guided strategies are drawn), and on CUDA the
peak memory of each model's steps. Label maps are synthetic Voronoi regions (8 semantic
classes, 12 instances per image) so guided masking has real regions to work on.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

from model import build_model
from model.masking import make_masking


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="c2fmae bench model", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="c2fmae_vit_b16,mae_vit_b16", help="comma-separated presets; first is the method, second the baseline")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps per model and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per model and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1, so CPU time is comparable on a shared machine; 0: torch's default)")
    p.add_argument("--progress", type=float, default=0.3, help="curriculum progress (0.3: half semantic-, half instance-guided)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every model (e.g. img_size=64)")
    return p.parse_args(argv)


def synthetic_batch(batch: int, img: int, classes: int, device: torch.device, seed: int = 0) -> dict:
    """Images plus Voronoi label maps: each cell takes the nearest of 12 random seeds."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = img // 4
    seeds = torch.rand(batch, 12, 2, generator=g) * h
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    cells = torch.stack([ys, xs], -1).reshape(1, -1, 1, 2).float()
    nearest = ((cells - seeds[:, None]) ** 2).sum(-1).argmin(-1).reshape(batch, h, h)
    region_class = torch.randint(0, min(classes, 8), (batch, 12), generator=g)
    semantic = torch.gather(region_class, 1, nearest.flatten(1)).reshape(batch, h, h)
    instance = (nearest + 1) * 1000 + torch.arange(batch).view(-1, 1, 1)  # arbitrary large ids
    image = torch.randn(batch, 3, img, img, generator=g)
    return {k: v.to(device) for k, v in
            {"image": image, "semantic": semantic, "instance": instance}.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(name: str, args, overrides: dict, device: torch.device) -> tuple[list, list, float | None, object]:
    torch.manual_seed(0)
    model = build_model(name, **overrides).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    cfg = model.config
    batch = synthetic_batch(args.batch, cfg.img_size, cfg.num_semantic_classes, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step() -> None:
        with autocast:
            loss = model(batch, args.progress)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall, cpu = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return wall, cpu, peak, cfg


def time_masking(cfg, args, device: torch.device, reps: int = 20) -> tuple[float, float]:
    batch = synthetic_batch(args.batch, cfg.img_size, cfg.num_semantic_classes, device)
    n = (cfg.img_size // cfg.patch_size) ** 2

    def once():
        make_masking(cfg, n, args.progress, args.batch, device, batch["semantic"], batch["instance"])

    once()
    wall, cpu = [], []
    for _ in range(reps):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        once()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str]) -> dict:
    from model.config import parse_overrides

    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("c2fmae bench model: error: --device cuda but CUDA is not available")
    overrides = parse_overrides(args.set)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if len(names) != 2:
        raise SystemExit("c2fmae bench model: error: --models needs exactly two presets (method,baseline)")
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    peaks: dict[str, float | None] = {}
    configs = {}
    for r in range(args.rounds):
        for name in names:
            w, c, peak, cfg = time_model(name, args, overrides, device)
            wall[name] += w
            cpu[name] += c
            peaks[name] = max(peaks.get(name) or 0.0, peak) if peak is not None else None
            configs[name] = cfg
            print(f"round {r + 1}/{args.rounds} {name}: wall " + ", ".join(f"{x:.3f}s" for x in w)
                  + "; cpu " + ", ".join(f"{x:.3f}s" for x in c), flush=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return _report(args, device, names, wall, cpu, peaks, time_masking(configs[names[0]], args, device))


def _report(args, device, names, wall, cpu, peaks, masking) -> dict:
    """On a CPU, ratios use process CPU time (robust to other jobs on a shared machine);
    on a GPU, wall-clock time."""
    method, base = names
    step = {n: statistics.median(wall[n]) for n in names}
    step_cpu = {n: statistics.median(cpu[n]) for n in names}
    basis = step_cpu if device.type == "cpu" else step
    mask_time = masking[1] if device.type == "cpu" else masking[0]
    result = {
        "device": str(device), "dtype": args.dtype, "batch": args.batch, "threads": torch.get_num_threads(),
        "step_s": step, "step_cpu_s": step_cpu, "images_per_s": {n: args.batch / step[n] for n in names},
        "peak_gib": peaks, "ratio": basis[method] / basis[base],
        "masking_s": mask_time, "masking_share": mask_time / basis[method],
    }
    clock = "CPU time" if device.type == "cpu" else "wall time"
    print(f"\n{device.type} {args.dtype}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps (median)\n")
    print("| model | step wall (s) | step CPU time (s) | images/s (wall) | peak memory (GiB) |")
    print("|---|---|---|---|---|")
    for n in names:
        peak = f"{peaks[n]:.2f}" if peaks[n] is not None else "n/a"
        print(f"| {n} | {step[n]:.3f} | {step_cpu[n]:.3f} | {result['images_per_s'][n]:.2f} | {peak} |")
    print(f"\n{method} / {base} step ({clock}): **{result['ratio']:.3f}x** (target <= 1.25x)")
    print(f"masking ({clock}): {mask_time * 1e3:.2f} ms = **{100 * result['masking_share']:.2f}%** "
          f"of the {method} step (target <= 2%)")
    return result
