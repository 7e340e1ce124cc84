"""Golden tests against the official MAE layout (facebookresearch/mae: util/pos_embed.py,
models_mae.py): position embedding, patchify, and an official-layout checkpoint that loads
into `decoder: mae` and computes the same thing."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from model import build_model
from model.layers import patchify, sincos_pos_embed, unpatchify
from model.mae_compat import load_official_mae
from tests.model.tiny import tiny_config


def reference_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's definition, written out per token: token t sits at row t // grid, column
    t % grid; channels [0, D/4) hold sin(column * w_i), [D/4, D/2) cos(column * w_i),
    [D/2, 3D/4) sin(row * w_i), [3D/4, D) cos(row * w_i), w_i = 1 / 10000^(i / (D/4));
    a zero row for the class token comes first."""
    q = dim // 4
    out = torch.zeros(grid * grid + 1, dim, dtype=torch.float64)
    for t in range(grid * grid):
        row, col = divmod(t, grid)
        for i in range(q):
            w = 1.0 / 10000 ** (i / q)
            out[t + 1, i] = math.sin(col * w)
            out[t + 1, q + i] = math.cos(col * w)
            out[t + 1, 2 * q + i] = math.sin(row * w)
            out[t + 1, 3 * q + i] = math.cos(row * w)
    return out.float()


def reference_patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """MAE's layout, per element: patch t (row-major), then pixel row, pixel column, channel."""
    b, c, h, w = images.shape
    gw = w // p
    out = torch.zeros(b, (h // p) * gw, p * p * c)
    for t in range(out.shape[1]):
        r, q = divmod(t, gw)
        for i in range(p):
            for j in range(p):
                out[:, t, (i * p + j) * c : (i * p + j + 1) * c] = images[:, :, r * p + i, q * p + j]
    return out


@pytest.mark.parametrize("dim,grid", [(16, 3), (32, 4), (64, 2)])
def test_pos_embed_matches_mae(dim, grid):
    ours = sincos_pos_embed(dim, grid, grid, cls_token=True)
    torch.testing.assert_close(ours, reference_pos_embed(dim, grid), rtol=0, atol=1e-6)


def test_encoder_pos_embed_buffer_is_mae_layout():
    model = build_model(tiny_config())
    torch.testing.assert_close(model.encoder.pos_embed[0], reference_pos_embed(32, 4), rtol=0, atol=1e-6)


def test_transformers_layout_differs_by_half_swap():
    """transformers 5 lays out [sin_h|cos_h|sin_w|cos_w]; MAE (and we) [sin_w|cos_w|sin_h|cos_h]."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    theirs = build_2d_sinusoidal_position_embedding(3, 3, embed_dim=16, cls_token=True).float()
    ours = sincos_pos_embed(16, 3, 3, cls_token=True)
    assert (theirs - ours).abs().max() > 0.5
    torch.testing.assert_close(torch.cat([theirs[:, 8:], theirs[:, :8]], dim=1), ours, rtol=0, atol=1e-6)


def test_patchify_matches_mae_and_inverts():
    images = torch.randn(2, 3, 16, 24)
    x = patchify(images, 8)
    torch.testing.assert_close(x, reference_patchify(images, 8), rtol=0, atol=0)
    torch.testing.assert_close(unpatchify(x, 8, 2, 3), images, rtol=0, atol=0)


class OfficialMAE(nn.Module):
    """A tiny MAE with exactly the attributes of facebookresearch/mae's MaskedAutoencoderViT
    (built from timm's PatchEmbed and Block as the official code is), so its state_dict has
    the official checkpoint layout; forward follows models_mae.py step by step."""

    def __init__(self, img=32, p=8, dim=32, depth=2, heads=2, ddim=32, ddepth=2, dheads=2):
        super().__init__()
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block

        norm = partial(nn.LayerNorm, eps=1e-6)
        self.p, n = p, (img // p) ** 2
        self.patch_embed = PatchEmbed(img, p, 3, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(reference_pos_embed(dim, img // p)[None], requires_grad=False)
        self.blocks = nn.ModuleList([Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth)])
        self.norm = norm(dim)
        self.decoder_embed = nn.Linear(dim, ddim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, ddim) * 0.02)
        self.decoder_pos_embed = nn.Parameter(reference_pos_embed(ddim, img // p)[None], requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(ddim, dheads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(ddepth)])
        self.decoder_norm = norm(ddim)
        self.decoder_pred = nn.Linear(ddim, p * p * 3)
        assert n + 1 == self.pos_embed.shape[1]

    def forward(self, imgs, noise, mask_ratio=0.75):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        b, n, d = x.shape
        keep = int(n * (1 - mask_ratio))
        shuffle = noise.argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        x = x.gather(1, shuffle[:, :keep, None].repeat(1, 1, d))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        mask = mask.gather(1, restore)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        tokens = torch.cat([x[:, 1:], self.mask_token.repeat(b, n - keep, 1)], dim=1)
        tokens = tokens.gather(1, restore[:, :, None].repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        target = reference_patchify(imgs, self.p)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        return loss, pred, mask


OFFICIAL_KEYS = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                 "norm.weight", "norm.bias", "mask_token", "decoder_pos_embed",
                 "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight",
                 "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
              "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
              "mlp.fc2.weight", "mlp.fc2.bias"]


def test_official_mae_checkpoint_loads_and_means_the_same():
    torch.manual_seed(0)
    official = OfficialMAE().eval()
    state = official.state_dict()
    expected = OFFICIAL_KEYS | {f"{pre}.{i}.{k}" for pre in ("blocks", "decoder_blocks")
                                for i in range(2) for k in BLOCK_KEYS}
    assert set(state) == expected  # the layout of mae_pretrain / mae_visualize checkpoints

    ours = build_model(tiny_config(decoder="mae", masking="random", pixel_decoder={"dim": 32, "depth": 2, "num_heads": 2}))
    ignored = load_official_mae(ours, {"model": state})
    assert ignored == []
    images = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    with torch.no_grad():
        ref_loss, ref_pred, ref_mask = official(images, noise)
        out = ours({"image": images}, 0.0, noise=noise)
    torch.testing.assert_close(out["mask"], ref_mask, rtol=0, atol=0)
    torch.testing.assert_close(out["pred_pixel"], ref_pred, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], ref_loss, rtol=1e-5, atol=1e-6)


def test_official_encoder_initialises_c2fmae():
    torch.manual_seed(0)
    official = OfficialMAE()
    model = build_model(tiny_config())
    ignored = load_official_mae(model, {"model": official.state_dict()})
    assert all(k.startswith(("decoder_", "mask_token")) for k in ignored)
    torch.testing.assert_close(model.encoder.blocks[1].mlp.fc2.weight, official.blocks[1].mlp.fc2.weight)


def test_load_official_mae_rejects_non_vit(tmp_path):
    with pytest.raises(ValueError, match="no encoder keys"):
        load_official_mae(build_model(tiny_config()), {"model": {"head.weight": torch.zeros(2, 2)}})
    with pytest.raises(FileNotFoundError, match="MAE checkpoint not found"):
        load_official_mae(build_model(tiny_config()), tmp_path / "missing.pth")
