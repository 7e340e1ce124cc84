"""SAM automatic mask generation: segment-anything's stock generator vs sam-amg-fast.

    c2fmae bench sam [--device cuda] [--model-type vit_h] [--images N] [--size 1024]
    python -m pipelines.benchmarks.sam ...   (the same, without the c2fmae command)

Both paths run the same SAM (random weights unless --checkpoint) on the same synthetic
images (flat-coloured ellipses, numpy only) with the same AMG settings, one
after the other in one process; the table gives images/s, masks per image, peak device
memory and the speed-up. Imports only torch, torchvision (via segment-anything),
segment_anything, pycocotools and numpy, so it runs on a bare GPU box without a network.

Random weights make SAM's predicted IoU and stability meaningless: at SAM's thresholds
nearly every mask is dropped, which leaves mostly the model's own cost. The "calibrated"
scenario therefore sets the predicted-IoU threshold from the random model's own scores on
the first image so that about --target-kept masks per image pass it, and turns the
(meaningless) stability filter off, so that upsampling, thresholding, RLE and NMS carry a
realistic load (a real ViT-H keeps on the order of a hundred or a few hundred masks of a
photo's 3072 before NMS). "runs/mask" (RLE runs of the stock masks) shows the masks are not noise.

Defaults depend on the device: on CUDA vit_h, 8 images of 1024x1024, 32x32 points; on
CPU a smoke run that `c2fmae bench all` can afford (the 0.4 M-parameter "tiny" SAM, 4 images
of 256x256, 16x16 points). A full-size model on a CPU takes minutes per image:
``--model-type vit_b --images 1 --points-per-side 8 --no-warmup``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

SCENARIOS = ("defaults", "calibrated")


def synthetic_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """RGB uint8 [size, size, 3]: a flat background with 6-12 flat-coloured ellipses.

    Flat regions matter with random weights: SAM's position embeddings start at zero, so a
    random encoder gives equal features to equal patches and the masks follow the shapes,
    with as few RLE runs as real masks; textured images would give speckled masks.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(count):
        image = np.empty((size, size, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        for _ in range(rng.integers(6, 13)):
            cy, cx = rng.uniform(0.1, 0.9, 2)
            ry, rx = rng.uniform(0.04, 0.25, 2)
            image[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.integers(0, 256, 3)
        images.append(image)
    return images


def shape_random_masks(sam, mask_scale: float = 200.0) -> None:
    """Make a randomly initialised SAM's masks look like masks; the compute is unchanged.

    Two weight tensors change: the mask upscaler's 2x2 transposed-convolution kernels are
    made constant over the window (else every mask carries a 4-pixel checkerboard, the
    worst case for RLE), and the hypernetworks' last layers are scaled so logits are O(1)
    (else every stability score is 0).
    """
    with torch.no_grad():
        for layer in sam.mask_decoder.output_upscaling:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                layer.weight.copy_(layer.weight.mean(dim=(2, 3), keepdim=True)
                                   .expand_as(layer.weight))
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(mask_scale)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str):
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return out, seconds, peak


def calibrate(fast, image: np.ndarray, target: int, points_per_side: int) -> float:
    """The predicted-IoU threshold that about `target` of the model's masks on `image` pass."""
    from segment_anything.utils.amg import build_point_grid

    from labeling.backends.fast_amg import _Crop

    h, w = image.shape[:2]
    with torch.inference_mode():
        emb, _ = fast._embed([image], [_Crop(0, [0, 0, w, h], 0, (h, w))])
        coords = fast.transform.apply_coords(build_point_grid(points_per_side) * [w, h], (h, w))
        iou = torch.cat([fast._decode(emb[:1], coords[i : i + 256])[1]
                         for i in range(0, len(coords), 256)])
    return float(torch.quantile(iou, max(0.0, 1 - target / len(iou))))


def matched_share(stock: list[list[dict]], fast: list, min_iou: float = 0.9) -> float:
    """Share of stock masks equal to, or with IoU >= min_iou with, a fast mask of the image."""
    hits = total = 0
    for anns, pred in zip(stock, fast):
        total += len(anns)
        if not anns or not len(pred.instances):
            continue
        size = anns[0]["segmentation"]["size"]
        a = [{"size": size, "counts": ann["segmentation"]["counts"].encode()} for ann in anns]
        b = [{"size": size, "counts": r["counts"]} for r in pred.instances.rles]
        iou = np.asarray(mask_utils.iou(a, b, [0] * len(b)))
        same = np.array([[x["counts"] == y["counts"] for y in b] for x in a])
        hits += int(((iou >= min_iou) | same).any(axis=1).sum())
    return hits / total if total else float("nan")


def runs_per_mask(stock: list[list[dict]], per_image: int = 20) -> float:
    """Mean number of RLE runs (column-major) of up to `per_image` stock masks per image."""
    runs = []
    for anns in stock:
        for ann in anns[:per_image]:
            flat = mask_utils.decode(ann["segmentation"]).ravel(order="F")
            runs.append(1 + int(np.count_nonzero(flat[1:] != flat[:-1])))
    return float(np.mean(runs)) if runs else float("nan")


def run_scenario(sam, images, settings: dict[str, Any], args) -> dict[str, Any]:
    from segment_anything import SamAutomaticMaskGenerator

    from labeling.backends.fast_amg import FastAmgBackend

    stock = SamAutomaticMaskGenerator(sam, output_mode="coco_rle",
                                      points_per_batch=args.stock_points_per_batch, **settings)
    fast = FastAmgBackend(device=args.device, model=sam, image_batch_size=args.image_batch_size,
                          bf16=not args.no_bf16, compile=args.compile,
                          points_per_batch=args.points_per_batch, **settings)
    if args.warmup:
        stock.generate(images[0])
        fast.predict(images[: args.image_batch_size], [None] * args.image_batch_size)
    stock_out, stock_s, stock_peak = _timed(lambda: [stock.generate(im) for im in images],
                                            args.device)
    fast_out, fast_s, fast_peak = _timed(lambda: fast.predict(images, [None] * len(images)),
                                         args.device)
    n = len(images)
    return {
        "settings": settings,
        "stock": {"images_per_s": n / stock_s, "masks_per_image": sum(map(len, stock_out)) / n,
                  "peak_gib": stock_peak},
        "fast": {"images_per_s": n / fast_s,
                 "masks_per_image": sum(len(p.instances) for p in fast_out) / n,
                 "peak_gib": fast_peak},
        "runs_per_mask": runs_per_mask(stock_out),
        "speedup": stock_s / fast_s,
        "matched_share": matched_share(stock_out, fast_out),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="c2fmae bench sam", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model-type", default=None, help="vit_h | vit_l | vit_b | tiny")
    p.add_argument("--checkpoint", default="random", help=".pth path, or 'random'")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--points-per-side", type=int, default=None)
    p.add_argument("--stock-points-per-batch", type=int, default=64, help="stock's default")
    p.add_argument("--points-per-batch", type=int, default=256, help="fast path")
    p.add_argument("--image-batch-size", type=int, default=4, help="fast path")
    p.add_argument("--no-bf16", action="store_true", help="fast path in float32")
    p.add_argument("--compile", action="store_true", help="torch.compile the image encoder")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="defaults,calibrated")
    p.add_argument("--target-kept", type=int, default=150,
                   help="calibrated: masks per image that pass the filters (before NMS)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.model_type = args.model_type or ("vit_h" if gpu else "tiny")
    args.images = args.images or (8 if gpu else 4)
    args.size = args.size or (1024 if gpu else 256)
    args.points_per_side = args.points_per_side or (32 if gpu else 16)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def print_table(result: dict[str, Any]) -> None:
    a = result["args"]
    print(f"SAM {a['model_type']} ({a['checkpoint']} weights) on {result['device']}: "
          f"{a['images']} images {a['size']}x{a['size']}, {a['points_per_side']}^2 points; "
          f"stock {a['stock_points_per_batch']} points/batch fp32; fast "
          f"{a['points_per_batch']} points/batch, {a['image_batch_size']} images/batch, "
          f"{result['fast_dtype']}{', compiled' if a['compile'] else ''}\n")
    print("| scenario | pred_iou / stability thresh | path | images/s | masks/image "
          "| runs/mask | peak GiB | speed-up | stock masks matched (IoU>=0.9) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in result["scenarios"].items():
        th = f"{r['settings']['pred_iou_thresh']:.3g} / {r['settings']['stability_score_thresh']:.3g}"
        for path in ("stock", "fast"):
            p = r[path]
            peak = "-" if p["peak_gib"] is None else f"{p['peak_gib']:.1f}"
            extra = (f"| {r['speedup']:.2f}x | {r['matched_share']:.2f} |" if path == "fast"
                     else "| | |")
            runs = f"{r['runs_per_mask']:.0f}" if path == "stock" else ""
            print(f"| {name} | {th} | {path} | {p['images_per_s']:.3f} | "
                  f"{p['masks_per_image']:.1f} | {runs} | {peak} {extra}")


def main(argv: list[str]) -> dict[str, Any]:
    from labeling.backends.fast_amg import FastAmgBackend
    from labeling.backends.sam import AMG_DEFAULTS, load_sam

    args = parse(argv)
    torch.manual_seed(args.seed)
    sam = load_sam(args.model_type, args.checkpoint, args.device)
    if args.checkpoint == "random":
        shape_random_masks(sam)
    images = synthetic_images(args.images, args.size, args.seed)
    base = {"points_per_side": args.points_per_side}
    bf16 = args.device.startswith("cuda") and not args.no_bf16  # autocast is CUDA-only
    result: dict[str, Any] = {"device": device_name(args.device), "args": vars(args),
                              "fast_dtype": "bf16" if bf16 else "fp32", "scenarios": {}}
    for scenario in args.scenarios.split(","):
        settings = dict(base, pred_iou_thresh=AMG_DEFAULTS["pred_iou_thresh"],
                        stability_score_thresh=AMG_DEFAULTS["stability_score_thresh"])
        if scenario == "calibrated":
            probe = FastAmgBackend(device=args.device, model=sam, bf16=not args.no_bf16)
            iou_t = calibrate(probe, images[0], args.target_kept, args.points_per_side)
            settings.update(pred_iou_thresh=iou_t, stability_score_thresh=0.0)
        result["scenarios"][scenario] = run_scenario(sam, images, settings, args)
    print_table(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
