"""Tiny random models saved to disk, for the backend tests (built once per test module).

Each builder writes a checkpoint folder (or .pth file) the way a real one looks, so the
backends load it through their ordinary loading code: `from_pretrained(dir)` for
transformers models (config, weights and the processor saved beside them), and
`labeling.backends.sam.load_sam` for SAM. Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CLASSES = ["wall", "sky", "person", "cat", "tree"]


def _id2label() -> dict[int, str]:
    return dict(enumerate(CLASSES))


def tiny_swin(out_features=("stage1", "stage2", "stage3", "stage4")):
    from transformers import SwinConfig

    return SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                      window_size=4, image_size=64, drop_path_rate=0.0,
                      out_features=list(out_features))


def save_mask2former(path: Path, size: int = 64) -> Path:
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
    )

    torch.manual_seed(0)
    config = Mask2FormerConfig(
        backbone_config=tiny_swin(), feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        dim_feedforward=64, num_queries=8, id2label=_id2label(),
        label2id={v: k for k, v in _id2label().items()},
    )
    Mask2FormerForUniversalSegmentation(config).eval().save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": size, "longest_edge": 2 * size},
                              size_divisor=32).save_pretrained(path)
    return path


def _byte_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: every byte, alone or word-final."""
    # byte-level BPE shows printable bytes as themselves and shifts the rest past 255
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    shifted = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def save_oneformer(path: Path, size: int = 64) -> Path:
    from transformers import (
        CLIPTokenizer,
        OneFormerConfig,
        OneFormerForUniversalSegmentation,
        OneFormerImageProcessor,
        OneFormerProcessor,
    )

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    vocab = _byte_vocab()
    config = OneFormerConfig(
        backbone_config=tiny_swin(), num_queries=8, conv_dim=32, mask_dim=32, hidden_dim=32,
        encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        dim_feedforward=64, text_encoder_width=32, text_encoder_num_layers=1,
        text_encoder_vocab_size=len(vocab), text_encoder_context_length=16, task_seq_len=16,
        text_encoder_n_ctx=4, query_dec_layers=1, id2label=_id2label(),
        label2id={v: k for k, v in _id2label().items()},
    )
    OneFormerForUniversalSegmentation(config).eval().save_pretrained(path)
    info = {str(i): {"name": n, "isthing": int(n in ("person", "cat"))}
            for i, n in enumerate(CLASSES)}
    (path / "tiny_classes.json").write_text(json.dumps(info))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
    image_processor = OneFormerImageProcessor(
        size={"shortest_edge": size, "longest_edge": 2 * size}, size_divisor=32,
        class_info_file="tiny_classes.json", repo_path=str(path), num_text=4)
    OneFormerProcessor(image_processor=image_processor, tokenizer=tokenizer,
                       max_seq_length=16, task_seq_length=16).save_pretrained(path)
    return path


def save_eomt(path: Path, size: int = 64) -> Path:
    from transformers import EomtConfig, EomtForUniversalSegmentation, EomtImageProcessor

    torch.manual_seed(0)
    config = EomtConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        image_size=size, patch_size=16, num_blocks=1, num_queries=8,
                        num_register_tokens=1, id2label=_id2label(),
                        label2id={v: k for k, v in _id2label().items()})
    EomtForUniversalSegmentation(config).eval().save_pretrained(path)
    EomtImageProcessor(size={"shortest_edge": size, "longest_edge": None},
                       do_split_image=True).save_pretrained(path)
    return path


def save_segformer(path: Path, size: int = 64) -> Path:
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    torch.manual_seed(0)
    config = SegformerConfig(hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32,
                             id2label=_id2label(), label2id={v: k for k, v in _id2label().items()})
    SegformerForSemanticSegmentation(config).eval().save_pretrained(path)
    SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(path)
    return path


WORDS = ["cat", "dog", "tabby", "golden", "retriever", "a", "photo", "of", "."]


def save_grounding_dino(path: Path, size: int = 128) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (path / "vocab.txt").write_text("\n".join(specials + WORDS) + "\n")
    tokenizer = BertTokenizer(vocab=str(path / "vocab.txt"))  # v5: `vocab`, not `vocab_file`
    text = BertConfig(vocab_size=len(specials) + len(WORDS), hidden_size=32,
                      num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=64)
    config = GroundingDinoConfig(
        backbone_config=tiny_swin(("stage2", "stage3", "stage4")), text_config=text,
        num_queries=16, encoder_layers=1, decoder_layers=2, d_model=32, encoder_ffn_dim=64,
        decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
        max_text_len=32, encoder_n_points=2, decoder_n_points=2,
    )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(path)
    # at 64 px the extra 1/64 feature level is 1x1, which its GroupNorm refuses
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": size, "longest_edge": 2 * size})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer) \
        .save_pretrained(path)
    return path


def save_tiny_sam(path: Path) -> Path:
    """A tiny SAM (labeling.backends.sam.build_tiny_sam) with mask-like random masks, as .pth.

    At the default init every mask is a 4-pixel checkerboard with logits ~0.03 (so every
    stability score is 0 and AMG keeps nothing); the benchmark's shape_random_masks makes
    the upscaler smooth and the logits O(1), without changing the architecture.
    """
    from labeling.backends.sam import build_tiny_sam
    from pipelines.benchmarks.sam import shape_random_masks

    torch.manual_seed(0)
    sam = build_tiny_sam()
    shape_random_masks(sam)
    torch.save(sam.state_dict(), path)
    return path


def photos() -> list:
    """Three small real photos of different shapes (scikit-image ships them)."""
    from skimage import data

    return [data.astronaut()[::4, ::4].copy(), data.coffee()[::5, ::5].copy(),
            data.chelsea()[::3, ::4].copy()]
