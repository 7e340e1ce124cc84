"""Decoders: the cascaded (or parallel) three-stage decoder, and MAE's decoder.

Cascaded stage k (semantic, instance, pixel), over all L patch positions:
  memory_k  = [embed_k(cls) ; embed_k(unshuffle(visible tokens, mask tokens)) + pos
               + bridge_k(F_{k-1})]           (the previous stage at the same positions)
  queries_k = query_k + pos
  F_k       = norm(self-blocks(cross-block(queries_k, memory_k)))
  output_k  = head_k(F_k)
`parallel` drops the bridge, giving three independent decoders (the ablation baseline).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import ModelConfig, StageConfig
from model.layers import Block, CrossBlock, init_weights, sincos_pos_embed


def unshuffle(visible: Tensor, mask_token: Tensor, ids_restore: Tensor) -> Tensor:
    """[B, n_keep, D] visible tokens + mask tokens -> [B, L, D] in patch order (as MAE)."""
    b, n_keep, d = visible.shape
    filler = mask_token.expand(b, ids_restore.shape[1] - n_keep, d)
    x = torch.cat([visible, filler], dim=1)
    return torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))


class DecoderStage(nn.Module):
    def __init__(self, enc_dim: int, cfg: StageConfig, grid: int, out_dim: int,
                 prev_dim: int | None, mlp_ratio: float = 4.0):
        super().__init__()
        w = cfg.dim
        self.embed = nn.Linear(enc_dim, w)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.query = nn.Parameter(torch.zeros(1, 1, w))
        self.bridge = nn.Linear(prev_dim, w) if prev_dim is not None else None
        self.register_buffer("pos_embed", sincos_pos_embed(w, grid, grid).unsqueeze(0), persistent=False)
        self.cross = CrossBlock(w, cfg.num_heads, mlp_ratio)
        self.blocks = nn.ModuleList([Block(w, cfg.num_heads, mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.head = nn.Linear(w, out_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.query, std=0.02)

    def forward(self, cls: Tensor, visible: Tensor, ids_restore: Tensor,
                previous: Tensor | None) -> tuple[Tensor, Tensor]:
        """cls: [B, 1, D_enc]; visible: [B, n_keep, D_enc]; previous: [B, L, w_prev] or None.

        Returns (features F_k [B, L, w], head output [B, L, out_dim]).
        """
        grid = unshuffle(self.embed(visible), self.mask_token, ids_restore) + self.pos_embed
        if self.bridge is not None:
            grid = grid + self.bridge(previous)
        memory = torch.cat([self.embed(cls), grid], dim=1)
        x = (self.query + self.pos_embed).expand(visible.shape[0], -1, -1)
        x = self.cross(x, memory)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x, self.head(x)


class StagedDecoder(nn.Module):
    """Semantic -> instance -> pixel stages; `cascaded` links them, `parallel` does not."""

    def __init__(self, config: ModelConfig, grid: int, out_dims: tuple[int, int, int]):
        super().__init__()
        stages = (config.semantic_decoder, config.instance_decoder, config.pixel_decoder)
        cascaded = config.decoder == "cascaded"
        self.stages = nn.ModuleList()
        prev = None
        for cfg, out_dim in zip(stages, out_dims):
            self.stages.append(DecoderStage(config.embed_dim, cfg, grid, out_dim,
                                            prev if cascaded else None, config.mlp_ratio))
            prev = cfg.dim

    def forward(self, cls: Tensor, visible: Tensor, ids_restore: Tensor) -> list[Tensor]:
        outputs, previous = [], None
        for stage in self.stages:
            previous, out = stage(cls, visible, ids_restore, previous)
            outputs.append(out)
        return outputs  # [semantic, instance, pixel], each [B, L, out_dim]


class MAEDecoder(nn.Module):
    """MAE's decoder, parameter names as the official checkpoints (decoder_embed, mask_token,
    decoder_pos_embed, decoder_blocks, decoder_norm, decoder_pred)."""

    def __init__(self, enc_dim: int, cfg: StageConfig, grid: int, out_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        w = cfg.dim
        self.decoder_embed = nn.Linear(enc_dim, w)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        pos = sincos_pos_embed(w, grid, grid, cls_token=True).unsqueeze(0)
        self.register_buffer("decoder_pos_embed", pos, persistent=True)
        self.decoder_blocks = nn.ModuleList([Block(w, cfg.num_heads, mlp_ratio) for _ in range(cfg.depth)])
        self.decoder_norm = nn.LayerNorm(w, eps=1e-6)
        self.decoder_pred = nn.Linear(w, out_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: Tensor, ids_restore: Tensor) -> Tensor:
        """tokens: encoder output [B, 1+n_keep, D] -> pixel predictions [B, L, out_dim]."""
        x = self.decoder_embed(tokens)
        patches = unshuffle(x[:, 1:], self.mask_token, ids_restore)
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]
