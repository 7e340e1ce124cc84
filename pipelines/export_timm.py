"""`c2fmae export-timm CKPT --out FILE`: a checkpoint's encoder as timm ViT weights.

FILE holds a plain state_dict (torch .pt/.pth, or .safetensors) that
`timm.create_model(NAME, num_classes=0)` loads with strict=True, NAME being printed here
(e.g. vit_base_patch16_224 for c2fmae_vit_b16); for encoders that match no timm preset,
the VisionTransformer arguments are printed instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint directory (latest step) or a model_NNNNNN.pt / meta file")
    parser.add_argument("--out", required=True, help="output file (.pt, .pth or .safetensors)")
    parser.add_argument("--step", type=int, default=None, help="step to export (default: latest)")


def write_state(state: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp)
        else:
            import torch

            torch.save(state, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(checkpoint: str | Path, out: str | Path, step: int | None = None) -> dict:
    """Export the encoder; returns {"file", "timm_name", "timm_kwargs", "num_tensors"}."""
    from model.checkpoint import load_checkpoint
    from model.mae_compat import timm_kwargs, timm_state_dict
    from model.presets import timm_name

    out = Path(out)
    if out.suffix not in (".pt", ".pth", ".safetensors"):
        raise ValueError(f"--out must end in .pt, .pth or .safetensors, got {out.name!r}")
    model, meta, _ = load_checkpoint(checkpoint, step)
    state = timm_state_dict(model)
    write_state(state, out)
    info = {"file": str(out), "timm_name": timm_name(model.config),
            "timm_kwargs": timm_kwargs(model.config), "num_tensors": len(state),
            "step": meta.get("step")}
    log.info("wrote %d tensors of step %s to %s", len(state), meta.get("step"), out)
    return info


def run(args: argparse.Namespace) -> int:
    try:
        info = export(args.checkpoint, args.out, args.step)
    except (FileNotFoundError, ValueError) as exc:
        print(f"c2fmae export-timm: error: {exc}", file=sys.stderr)
        return 2
    if info["timm_name"]:
        print(f"load with: timm.create_model({info['timm_name']!r}, num_classes=0, "
              f"pretrained=True, pretrained_cfg_overlay=dict(file={info['file']!r}))")
    else:
        print("load with: timm.models.vision_transformer.VisionTransformer("
              + ", ".join(f"{k}={v!r}" for k, v in info["timm_kwargs"].items())
              + f").load_state_dict(torch.load({info['file']!r}))")
    return 0
