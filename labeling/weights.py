"""Where the production checkpoints live, and a downloader for users with a network.

    python -m labeling.weights --list
    python -m labeling.weights --all [--dir DIR]
    python -m labeling.weights sam_vit_h mask2former [--dir DIR]

The weights directory is ``$C2FMAE_WEIGHTS`` if set, else ``~/.cache/c2fmae/weights``.
SAM checkpoints are single ``.pth`` files saved there under their published names;
Hugging Face repos are saved as plain folders ``hf/<org>--<name>`` (snapshot_download with
``local_dir``), which the backends find on their own, so labeling then runs with no
network (HF_HUB_OFFLINE=1). Nothing in this project downloads anything at run time:
only this command does, and the tests never call it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class Checkpoint:
    name: str
    kind: str  # "url" (one file) or "hf" (a hub repo)
    source: str  # URL, or hub repo id
    filename: str = ""  # for "url": the file name under the weights dir
    extra: tuple[tuple[str, str], ...] = ()  # (hub dataset repo, file) fetched beside an hf repo
    note: str = ""


CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in [
    Checkpoint("sam_vit_h", "url", SAM_URL + "sam_vit_h_4b8939.pth", "sam_vit_h_4b8939.pth",
               note="SAM ViT-H, 2.6 GB (imagenet profile)"),
    Checkpoint("sam_vit_l", "url", SAM_URL + "sam_vit_l_0b3195.pth", "sam_vit_l_0b3195.pth",
               note="SAM ViT-L, 1.2 GB"),
    Checkpoint("sam_vit_b", "url", SAM_URL + "sam_vit_b_01ec64.pth", "sam_vit_b_01ec64.pth",
               note="SAM ViT-B, 375 MB (imagenet-fast profile)"),
    Checkpoint("mask2former", "hf", "facebook/mask2former-swin-large-ade-semantic",
               note="Mask2Former Swin-L ADE20K-150 semantic"),
    Checkpoint("mask2former-coco-panoptic", "hf", "facebook/mask2former-swin-large-coco-panoptic",
               note="Mask2Former Swin-L COCO panoptic (133 classes, thing instances)"),
    Checkpoint("mask2former-swin-s-coco-panoptic", "hf",
               "facebook/mask2former-swin-small-coco-panoptic",
               note="Mask2Former Swin-S COCO panoptic (MultiMAE's labeler)"),
    Checkpoint("oneformer", "hf", "shi-labs/oneformer_ade20k_swin_large",
               extra=(("shi-labs/oneformer_demo", "ade20k_panoptic.json"),),
               note="OneFormer Swin-L ADE20K (+ its class-info file)"),
    Checkpoint("eomt", "hf", "tue-mps/ade20k_semantic_eomt_large_512",
               note="EoMT ViT-L ADE20K semantic 512"),
    Checkpoint("segformer", "hf", "nvidia/segformer-b5-finetuned-ade-640-640",
               note="SegFormer-B5 ADE20K 640"),
    Checkpoint("grounding-dino", "hf", "IDEA-Research/grounding-dino-tiny",
               note="Grounding DINO Swin-T (grounded-sam detector)"),
    Checkpoint("grounding-dino-base", "hf", "IDEA-Research/grounding-dino-base",
               note="Grounding DINO Swin-B"),
]}

# SAM model type -> the checkpoint entry a backend falls back to when given no path.
SAM_DEFAULTS = {"vit_h": "sam_vit_h", "default": "sam_vit_h", "vit_l": "sam_vit_l",
                "vit_b": "sam_vit_b"}


def weights_dir() -> Path:
    """$C2FMAE_WEIGHTS, or ~/.cache/c2fmae/weights."""
    env = os.environ.get("C2FMAE_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "c2fmae" / "weights"


def hf_local_dir(repo_id: str, root: Path | None = None) -> Path:
    """The folder `python -m labeling.weights` saves a hub repo to."""
    return (root or weights_dir()) / "hf" / repo_id.replace("/", "--")


def entry_for_source(source: str) -> str | None:
    """The registry name whose hub repo or file is `source` (for error messages)."""
    for c in CHECKPOINTS.values():
        if source in (c.source, c.filename, c.name):
            return c.name
    return None


def download_hint(name: str | None) -> str:
    where = weights_dir()
    if name is None:
        return f"put it under {where} (or pass a local path)"
    return (f"download it with `python -m labeling.weights {name}` (or `make weights`), "
            f"which puts it under {where} (set C2FMAE_WEIGHTS to change that)")


def _download_url(url: str, dest: Path) -> None:
    from tqdm import tqdm

    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    tmp.rename(dest)


def download(name: str, root: Path) -> Path:
    """Fetch one registry entry into `root`; returns where it went (skips what is there)."""
    ckpt = CHECKPOINTS[name]
    if ckpt.kind == "url":
        dest = root / ckpt.filename
        if dest.exists():
            log.info("%s: already at %s", name, dest)
            return dest
        root.mkdir(parents=True, exist_ok=True)
        _download_url(ckpt.source, dest)
        return dest
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    dest = hf_local_dir(ckpt.source, root)
    skip = ["*.msgpack", "*.h5", "*.onnx", "tf_model*", "flax_model*", "rust_model*"]
    if any(f.endswith(".safetensors") for f in HfApi().list_repo_files(ckpt.source)):
        skip.append("*.bin")  # the same weights twice
    snapshot_download(ckpt.source, local_dir=dest, ignore_patterns=skip)
    for repo, filename in ckpt.extra:
        hf_hub_download(repo, filename, repo_type="dataset", local_dir=dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.weights",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries: {', '.join(CHECKPOINTS)}")
    parser.add_argument("--all", action="store_true", help="every entry")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--dir", type=Path, default=None, help=f"default: {weights_dir()}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = (args.dir or weights_dir()).expanduser()
    if args.list or not (args.all or args.names):
        for c in CHECKPOINTS.values():
            print(f"{c.name:34s} {c.source}  ({c.note})")
        return 0 if args.list else 2
    unknown = [n for n in args.names if n not in CHECKPOINTS]
    if unknown:
        print(f"labeling.weights: error: unknown entries {unknown}; known: "
              f"{', '.join(CHECKPOINTS)}", file=sys.stderr)
        return 2
    names = list(CHECKPOINTS) if args.all else args.names
    for name in names:
        print(f"{name}: {download(name, root)}")
    if args.dir is not None and args.dir.expanduser() != weights_dir():
        print(f"set C2FMAE_WEIGHTS={root} so the backends find these files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
