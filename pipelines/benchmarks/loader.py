"""`c2fmae bench loader`: the pre-training loader's cost per image against plain RGB loaders.

    c2fmae bench loader [--images 256] [--img-size 224] [--long 4000]
    c2fmae bench loader --device cuda [--train-configs demo,vit_b16_imagenet] [--gpu-batch 256]

Builds N JPEGs (375x500, random views of the scikit-image photos, quality 90) with the
realistic masks of the storage benchmark (8 semantic regions, ~30 instances, smooth
edges) in a temp folder, then times on one core (one process, one thread):

- plain: decode + RandomResizedCrop + flip + normalize of the same files, through the same
  image code as ours (PIL, DCT draft for JPEGs), batched to tensors;
- torchvision: the usual MAE pipeline (PIL decode, RandomResizedCrop, flip, ToTensor,
  Normalize), for reference;
- ours: dataset.loader.PretrainLoader (Parquet rows, image decode, RLE parse of every
  mask, one crop for image + both label maps, vocabulary remap), one epoch per round.

Then a long run of our loader (`--long` images, several epochs) samples the process's
resident memory to show that it stays flat. With `--device cuda`, the training step's
images/s (compute only: one real batch resident on the GPU) and peak GPU memory of the
named configs, and the same with the real loader feeding it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset import transforms
from dataset.loader import DataConfig, PretrainLoader


def build_data(root: Path, count: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """JPEG files + a label directory for them; returns (labels dir, image paths)."""
    from PIL import Image

    from dataset.schema import file_metadata
    from dataset.shards import shard_info, write_manifest, write_shard
    from pipelines.benchmarks.storage import _labels_for, _photos, _random_view, _row

    rng = np.random.default_rng(seed)
    photos, images, rows, paths = _photos(), root / "images", [], []
    for i in range(count):
        img = _random_view(photos[i % len(photos)], 375, 500, rng)
        sem, inst = _labels_for(img, "smooth", 8, 30, rng)
        row = _row(i, img, sem, inst)
        path = images / row["image_id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img)).save(path, format="JPEG", quality=90)
        rows.append(row)
        paths.append(path)
    # as many classes as the demo labels (background, 1000 ImageNet classes, salient object),
    # so the semantic head of the timed models has its real size
    vocab = {i: f"class {i}" for i in range(1002)}
    meta = file_metadata(semantic_vocab=vocab, input_root=str(images))
    labels = root / "labels"
    for s in range(0, count, 128):
        write_shard(labels, s // 128, rows[s:s + 128], meta, row_group_size=64)
    write_manifest(labels, [shard_info(p) for p in sorted((labels / "shards").glob("*.parquet"))], meta)
    return labels, paths


def plain_epoch(paths: list[Path], size: int, batch: int, seed: int) -> int:
    """Decode + crop + flip + normalize with our image code, batched; returns images done."""
    rng = np.random.default_rng(seed)
    done, pending = 0, []
    for path in paths:
        with transforms.open_image(path) as image:
            w, h = image.size
            box = transforms.sample_crop(rng, h, w)
            pending.append(transforms.normalize(transforms.crop_image(image, box, size)))
        if len(pending) == batch:
            torch.from_numpy(np.stack(pending))
            done, pending = done + len(pending), []
    return done + len(pending)


def torchvision_epoch(paths: list[Path], size: int, batch: int) -> int:
    from PIL import Image
    from torchvision import transforms as T

    pipe = T.Compose([T.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                      T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(transforms.IMAGENET_MEAN.tolist(), transforms.IMAGENET_STD.tolist())])
    pending = []
    for path in paths:
        with Image.open(path) as image:
            pending.append(pipe(image.convert("RGB")))
        if len(pending) == batch:
            torch.stack(pending)
            pending = []
    return len(paths)


def ours_epoch(labels: Path, size: int, batch: int, seed: int) -> int:
    cfg = DataConfig(labels=str(labels), img_size=size, num_workers=0)
    return sum(len(b["image_id"]) for b in PretrainLoader(cfg, batch, seed=seed, epochs=1))


def rows_epoch(labels: Path) -> list[dict]:
    """Only the Parquet side: every row as a dict, masks still encoded."""
    from dataset.loader import READ_COLUMNS
    from dataset.reader import LabelReader

    return [row for row, _ in LabelReader(labels, columns=READ_COLUMNS).rows()]


def labels_epoch(rows: list[dict], size: int, seed: int) -> int:
    """Only the label side: one crop of both label maps per row, from the encoded masks."""
    rng = np.random.default_rng(seed)
    for row in rows:
        box = transforms.sample_crop(rng, row["height"], row["width"])
        transforms.crop_labels(row, box, size // transforms.LABEL_STRIDE, {i: i for i in range(16)})
    return len(rows)


def interleaved_rates(fns: dict[str, Any], rounds: int) -> dict[str, float]:
    """Images per CPU-second of each fn (fastest of `rounds`), the fns taking turns each round.

    CPU time of this single-threaded process is what one core spends, whatever else the
    machine runs; taking turns spreads any remaining disturbance over all of them.
    """
    best = dict.fromkeys(fns, 0.0)
    for r in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            n = fn(r)
            best[name] = max(best[name], n / max(time.process_time() - t0, 1e-9))
    return best


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_run(labels: Path, size: int, batch: int, images: int) -> dict[str, float]:
    """Resident memory while our loader serves `images` images (several epochs)."""
    cfg = DataConfig(labels=str(labels), img_size=size, num_workers=0)
    samples, served = [], 0
    for i, b in enumerate(PretrainLoader(cfg, batch, seed=1)):
        served += len(b["image_id"])
        if i % 10 == 0:
            samples.append(rss_mb())
        if served >= images:
            break
    warm = samples[len(samples) // 4]  # after the first quarter: allocator pools are warm
    return {"images": served, "rss_warm_mb": warm, "rss_max_mb": max(samples[len(samples) // 4:]),
            "rss_end_mb": samples[-1], "growth_mb": samples[-1] - warm}


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="c2fmae bench loader", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--long", type=int, default=4000, help="images served in the memory run (0 = skip)")
    p.add_argument("--device", default="cpu",
                   help="cuda: also time training steps on the GPU (cpu-train: the same on the CPU)")
    p.add_argument("--train-configs", default="demo,vit_b16_imagenet")
    p.add_argument("--gpu-batch", type=int, default=256, help="per-GPU batch of the vit_b16 config")
    p.add_argument("--gpu-workers", type=int, default=12, help="loader workers for the loader-fed GPU run")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _one_thread_arrow()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        labels, paths = build_data(Path(tmp), args.images)
        print(f"built {args.images} images + labels in {time.perf_counter() - t0:.1f} s", flush=True)
        result = cpu_table(labels, paths, args)
        if args.long:
            result["memory"] = memory_run(labels, args.img_size, args.batch, args.long)
            m = result["memory"]
            print(f"\nmemory over {m['images']} images: warm {m['rss_warm_mb']:.0f} MB, max "
                  f"{m['rss_max_mb']:.0f} MB, end {m['rss_end_mb']:.0f} MB (growth {m['growth_mb']:+.1f} MB)")
        if args.device != "cpu":  # cuda; "cpu-train" times the CPU training path
            result["gpu"] = gpu_table(labels, Path(tmp), args)
    return result


def cpu_table(labels: Path, paths: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    size, batch, rounds = args.img_size, args.batch, args.rounds
    plain_epoch(paths[:batch], size, batch, 0)  # warm imports and caches
    torchvision_epoch(paths[:batch], size, batch)
    ours_epoch(labels, size, batch, 0)
    rows = rows_epoch(labels)
    rates = interleaved_rates({
        "plain (decode + crop)": lambda r: plain_epoch(paths, size, batch, r),
        "torchvision RandomResizedCrop": lambda r: torchvision_epoch(paths, size, batch),
        "ours (image + masks)": lambda r: ours_epoch(labels, size, batch, r),
        "  of which: Parquet rows -> dicts": lambda r: len(rows_epoch(labels)),
        "  of which: both label maps of the crop": lambda r: labels_epoch(rows, size, r),
    }, rounds)
    parts = {k: rates.pop(k) for k in list(rates) if k.startswith("  of which")}
    base = rates["plain (decode + crop)"]
    print(f"\n{len(paths)} JPEGs 375x500, crop to {size}, one process, one thread, CPU time, best of {rounds}\n")
    print("| loader | images/s per core | ms / image | cost x plain |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {1000 / rate:.2f} | {base / rate:.2f} |")
    for name, rate in parts.items():
        print(f"| {name} | {rate:.1f} | {1000 / rate:.2f} | {base / rate:.2f} |")
    return {"rates": rates, "parts": parts, "cost_ratio": base / rates["ours (image + masks)"]}


def _one_thread_arrow() -> None:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def _timed_steps(trainer: Any, batches: Any, warm: int, steps: int) -> float:
    """Seconds for `steps` training steps after `warm` untimed ones (device synchronised)."""
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    for _ in range(warm):
        trainer.train_step(batches)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batches)
    sync()
    return time.perf_counter() - t0


def gpu_table(labels: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Training images/s of each named config on one GPU: compute only, then loader-fed."""
    from model.training import load_config

    out: dict[str, Any] = {}
    cuda = args.device.startswith("cuda")
    print(f"\ntraining on {torch.cuda.get_device_name() if cuda else args.device}, one device\n")
    print("| config | model | batch | autocast | compute img/s | peak GPU GB | loader-fed img/s (workers) |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name in args.train_configs.split(","):
        over = [f"data.labels={labels}", f"output={tmp}/run_{name}", "ckpt_every=0", "vis_every=0",
                "log_every=100000", f"device={'cpu' if not cuda else args.device}", "eval.every=0",
                "steps=100000"]
        if name != "demo":
            over += [f"batch_size={args.gpu_batch}", "accum_steps=1"]
        cfg = load_config(name, over)
        cfg.data.num_workers = 0
        try:
            out[name] = _gpu_row(name, cfg, args, cuda)
        except torch.cuda.OutOfMemoryError as exc:
            print(f"| {name} | out of GPU memory at batch {cfg.batch_size}: {str(exc).splitlines()[0]} |")
        if cuda:
            torch.cuda.empty_cache()
    return out


def _gpu_row(name: str, cfg: Any, args: argparse.Namespace, cuda: bool) -> dict[str, float]:
    """One config: a real batch resident on the device (compute only), then loader-fed."""
    import itertools

    from model.training import Trainer

    trainer = Trainer(cfg)
    batch = {k: v.to(trainer.device) for k, v in next(iter(trainer.loader)).items() if torch.is_tensor(v)}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    compute = 10 * cfg.batch_size / _timed_steps(trainer, itertools.repeat(batch), 3, 10)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    cfg.data.num_workers = args.gpu_workers
    loader = PretrainLoader(cfg.data, trainer.micro, seed=1, pin_memory=cuda)
    fed = 20 * cfg.batch_size / _timed_steps(trainer, iter(loader), 3, 20)
    print(f"| {name} | {trainer.model.config.name} | {cfg.batch_size} | {trainer.amp} | {compute:.0f} "
          f"| {peak:.1f} | {fed:.0f} ({args.gpu_workers}) |", flush=True)
    return {"compute_img_s": compute, "peak_gb": peak, "loader_fed_img_s": fed}
