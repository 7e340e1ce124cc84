"""The encoder: a plain ViT whose state_dict names equal timm's VisionTransformer.

Keys: patch_embed.proj.{weight,bias}, cls_token, pos_embed (fixed sin-cos, with a zero row
for the class token, as MAE), blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2},
norm. `timm.create_model("vit_base_patch16_224", num_classes=0)` loads the encoder of
`c2fmae_vit_b16` with strict=True, and an official MAE checkpoint loads here unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.layers import Block, init_weights, sincos_pos_embed


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, L, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size = patch_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.embed_dim = dim
        self.patch_embed = PatchEmbed(patch_size, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed(dim, self.grid, self.grid, cls_token=True)
        self.register_buffer("pos_embed", pos.unsqueeze(0), persistent=True)  # [1, 1+L, D]
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like a linear layer, as MAE
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed_patches(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> patch tokens with position embedding, [B, L, D] (no class token)."""
        return self.patch_embed(images) + self.pos_embed[:, 1:]

    def forward_tokens(self, tokens: Tensor) -> Tensor:
        """Prepend the class token, run the blocks and the final norm: [B, N, D] -> [B, 1+N, D]."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: Tensor) -> Tensor:
        """Full image, no masking: [B, 3, H, W] -> [B, 1+L, D] (timm's forward_features)."""
        return self.forward_tokens(self.embed_patches(images))
