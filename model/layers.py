"""Building blocks: position embedding, patchify, and a compact transformer block.

Parameter names follow timm's VisionTransformer (norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2) so that encoder weights load into timm and official MAE weights load here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_pos_embed(dim: int, grid_h: int, grid_w: int, cls_token: bool = False) -> Tensor:
    """Fixed 2-D sine-cosine position embedding in the layout of the official MAE.

    Tokens are in row-major order. The first half of the channels encodes the column (x)
    index, the second half the row (y) index; each half is [sin(pos * w_i) | cos(pos * w_i)]
    with frequencies w_i = 10000^(-i / (dim/4)). With `cls_token`, a zero row comes first.
    Returns [grid_h * grid_w (+1), dim] float32.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")

    def encode(pos: Tensor) -> Tensor:  # [N] -> [N, dim/2]
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([encode(cols), encode(rows)], dim=1).float()
    if cls_token:
        emb = torch.cat([emb.new_zeros(1, dim), emb], dim=0)
    return emb


def patchify(images: Tensor, patch: int) -> Tensor:
    """images: [B, C, H, W] -> [B, L, p*p*C]; inside a patch: row, column, channel (as MAE)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, gh, gw, py, px, c
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(x: Tensor, patch: int, grid_h: int, grid_w: int, channels: int = 3) -> Tensor:
    """[B, L, p*p*C] -> [B, C, H, W]; the inverse of `patchify`."""
    b = x.shape[0]
    x = x.reshape(b, grid_h, grid_w, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, grid_h * patch, grid_w * patch)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout) and SDPA."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, N, D]
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, h, N, d/h]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    """Queries from `x`, keys and values from `memory`."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:  # x: [B, N, D], memory: [B, M, D]
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(memory).reshape(b, memory.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block: x + xattn(norm1(x), norm_memory(memory)), then MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm_memory = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), self.norm_memory(memory))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linear layers, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
