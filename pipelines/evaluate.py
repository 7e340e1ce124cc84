"""`c2fmae eval-knn` / `c2fmae eval-linear`: classify encoder features with the shards' class_index.

    c2fmae eval-knn out/pretrain/checkpoints --labels out/labels [--holdout 0.2] [--k 20]
    c2fmae eval-linear out/pretrain/checkpoints --labels out/labels [--epochs 100]

Features are the encoder's mean patch token (`forward_features`) of a centre crop (87.5%
of the shorter side, resized to the model's image size). The split is by a hash of the
image id (dataset.loader.is_held_out): held-out rows are the test set (k-NN queries), a
spread sample of the others is the training set (k-NN bank, probe training data). Rows
with status "error" or class_index < 0 are left out. The same code runs during
pre-training when `eval.every` > 0 (see model/training/config.py EvalConfig).
"""

from __future__ import annotations

import argparse
import logging
import sys
import zlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dataset import transforms
from dataset.loader import DataConfig, LabelSource, is_held_out
from dataset.reader import LabelReader
from dataset.shards import ShardError

log = logging.getLogger("c2fmae.evaluate")
COLUMNS = ["image_id", "class_index", "height", "width", "status", "image_bytes"]


def _share(image_id: str) -> float:
    return zlib.crc32(image_id.encode()) % 1_000_000 / 1_000_000


def split_rows(labels: str, holdout: float, max_rows: int) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows) with a class, from the hash split; train capped at max_rows."""
    reader = LabelReader(labels, columns=["image_id", "class_index", "status"])
    train, test = [], []
    for row, _ in reader.rows(only_ok=True):
        if row["class_index"] < 0:
            continue
        (test if is_held_out(row["image_id"], holdout) else train).append(row)
    if max_rows and len(train) > max_rows:  # a hash-spread sample, so every class keeps its share
        train = sorted(train, key=lambda r: _share(r["image_id"] + "#bank"))[:max_rows]
    return train, test


@torch.no_grad()
def extract_features(model: Any, labels: str, ids: set[str], *, image_root: str | None = None,
                     batch_size: int = 64, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Features of the rows whose image_id is in `ids`: ({id: [D] float32}, {id: class})."""
    source = LabelSource(DataConfig(labels=labels, image_root=image_root), readers=1)
    size = model.config.img_size
    feats: dict[str, torch.Tensor] = {}
    classes: dict[str, int] = {}
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        images = torch.from_numpy(np.stack([p for _, p in pending])).to(device)
        out = model.forward_features(images).float().cpu()
        for (image_id, _), f in zip(pending, out):
            feats[image_id] = f
        pending.clear()

    for row, _ in LabelReader(labels, columns=COLUMNS).rows(only_ok=True):
        if row["image_id"] not in ids:
            continue
        box = transforms.centre_crop(row["height"], row["width"])
        try:
            with transforms.open_image(source.image_source(row)) as image:
                pixels = transforms.crop_image(image, box, size, (row["height"], row["width"]))
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: %s", row["image_id"], exc)
            continue
        pending.append((row["image_id"], transforms.normalize(pixels)))
        classes[row["image_id"]] = int(row["class_index"])
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return feats, classes


def knn_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 of a weighted k-NN vote on cosine similarity (weights exp(sim / T), as DINO)."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_f))
    correct = 0
    for start in range(0, len(test_f), 1024):
        sim = test_f[start:start + 1024] @ train_f.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(top), classes).scatter_add_(1, train_y[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == test_y[start:start + 1024]).sum())
    return correct / max(1, len(test_f))


def linear_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                    epochs: int = 100, lr: float = 0.1, weight_decay: float = 1e-4) -> float:
    """Top-1 of a linear classifier on standardized features (full-batch AdamW, seeded)."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    x, xt = (train_f - mean) / std, (test_f - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(head(x), train_y).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return float((head(xt).argmax(1) == test_y).float().mean())


def split_features(model: Any, labels: str, *, holdout: float, max_rows: int,
                   image_root: str | None = None, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """(train features, train classes, test features, test classes) of the hash split."""
    train, test = split_rows(labels, holdout, max_rows)
    if not test or not train:
        raise ValueError(f"{labels}: the split has {len(train)} training and {len(test)} held-out rows "
                         f"with a class_index; change the holdout share ({holdout})")
    feats, classes = extract_features(model, labels, {r["image_id"] for r in train + test},
                                      image_root=image_root, batch_size=batch_size, device=device)

    def stack(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [r["image_id"] for r in rows if r["image_id"] in feats]
        if not ids:
            raise ValueError(f"{labels}: no readable images in one side of the split")
        return torch.stack([feats[i] for i in ids]), torch.tensor([classes[i] for i in ids])

    return (*stack(train), *stack(test))


def evaluate(model: Any, labels: str, *, holdout: float = 0.2, max_rows: int = 20000,
             knn: bool = True, linear: bool = False, k: int = 20, temperature: float = 0.07,
             epochs: int = 100, lr: float = 0.1, image_root: str | None = None,
             batch_size: int = 64, device: str | torch.device = "cpu") -> dict[str, float]:
    """k-NN and/or linear-probe top-1 of `model`'s encoder on the hash split of `labels`."""
    xf, xy, tf, ty = split_features(model, labels, holdout=holdout, max_rows=max_rows,
                                    image_root=image_root, batch_size=batch_size, device=device)
    result = {"train_rows": float(len(xf)), "test_rows": float(len(tf))}
    if knn:
        result["knn_top1"] = knn_accuracy(xf, xy, tf, ty, k, temperature)
    if linear:
        result["linear_top1"] = linear_accuracy(xf, xy, tf, ty, epochs=epochs, lr=lr)
    return result


def make_evaluator(cfg: Any):
    """The training loop's hook: (model, step) -> metrics, from the run's EvalConfig."""
    e = cfg.eval
    labels = e.labels or cfg.data.labels

    def run_eval(model: Any, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        return evaluate(model, labels, holdout=e.holdout, max_rows=e.max_rows, k=e.k,
                        temperature=e.temperature, linear=True, image_root=cfg.data.image_root,
                        batch_size=e.batch_size, device=device)

    return run_eval


# ---------------------------------------------------------------------------- command line
def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory (newest step) or a model_/meta_ file")
    parser.add_argument("--labels", required=True, help="label directory whose rows have class_index")
    parser.add_argument("--image-root", default=None, help="overrides the shards' input_root")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of rows used as the test set")
    parser.add_argument("--max-rows", type=int, default=20000, help="cap on training rows (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")


def add_eval_knn_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.07)


def add_eval_linear_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)


def _run(args: argparse.Namespace, linear: bool) -> int:
    from model.checkpoint import load_checkpoint
    from model.training.distributed import pick_device

    name = "eval-linear" if linear else "eval-knn"
    try:
        device = pick_device(args.device)
        model, meta, _ = load_checkpoint(args.checkpoint, device=device)
        model.eval()
        extra = ({"epochs": args.epochs, "lr": args.lr} if linear
                 else {"k": args.k, "temperature": args.temperature})
        result = evaluate(model, args.labels, holdout=args.holdout, max_rows=args.max_rows,
                          knn=not linear, linear=linear, image_root=args.image_root,
                          batch_size=args.batch_size, device=device, **extra)
    except (ValueError, FileNotFoundError, ShardError) as exc:
        print(f"c2fmae {name}: error: {exc}", file=sys.stderr)
        return 2
    top1 = result["linear_top1" if linear else "knn_top1"]
    print(f"{name}: step {meta.get('step')}: top-1 {top1:.4f} "
          f"({int(result['test_rows'])} test rows, {int(result['train_rows'])} train rows)")
    return 0


def run_eval_knn(args: argparse.Namespace) -> int:
    return _run(args, linear=False)


def run_eval_linear(args: argparse.Namespace) -> int:
    return _run(args, linear=True)
