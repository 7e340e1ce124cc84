"""Loss functions: targets, invariance to instance ids, and known values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import LossConfig
from model.labels import instance_boundaries, instance_encoding
from model.losses import boundary_loss, discriminative_loss, semantic_loss


def _two_instances() -> torch.Tensor:
    inst = torch.zeros(1, 6, 6, dtype=torch.long)
    inst[0, :3, :3] = 5
    inst[0, 3:, 3:] = 900
    return inst


def test_boundaries_mark_both_sides_of_an_id_change():
    inst = torch.zeros(1, 4, 4, dtype=torch.long)
    inst[0, :, 2:] = 7
    expected = torch.zeros(1, 4, 4)
    expected[0, :, 1:3] = 1
    assert torch.equal(instance_boundaries(inst), expected)


def test_instance_encoding_ignores_id_values():
    inst = _two_instances()
    relabelled = torch.where(inst == 5, 3, torch.where(inst == 900, 11, 0))
    assert torch.equal(instance_encoding(inst, 3), instance_encoding(relabelled, 3))
    assert instance_encoding(inst, 3).shape == (1, 9, 6, 6)


def test_boundary_loss_matches_torch_bce():
    logits, target = torch.randn(2, 5, 5), (torch.rand(2, 5, 5) > 0.7).float()
    weight = (torch.rand(2, 5, 5) > 0.5).float()
    ref = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(3.0), reduction="none")
    torch.testing.assert_close(boundary_loss(logits, target, weight, 3.0), (ref * weight).sum() / weight.sum())


def test_semantic_loss_ignores_unlabeled_and_unweighted_cells():
    logits = torch.randn(1, 4, 2, 2)
    target = torch.tensor([[[1, -1], [2, 3]]])
    weight = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    torch.testing.assert_close(semantic_loss(logits, target, weight), (ce[0, 0, 0] + ce[0, 1, 0]) / 2)
    assert semantic_loss(logits, torch.full_like(target, -1), weight) == 0  # nothing to count: 0, not NaN


def test_discriminative_loss_zero_for_separated_clusters_and_id_invariant():
    cfg = LossConfig()
    inst = _two_instances()
    emb = torch.zeros(1, 2, 6, 6)
    emb[0, 0][inst[0] == 5] = 2.0
    emb[0, 1][inst[0] == 900] = 2.0  # means 2.83 apart < 2 * 1.5: a small push remains
    weight = torch.ones(1, 6, 6)
    near = discriminative_loss(emb, inst, weight, cfg)
    far = discriminative_loss(emb * 3, inst, weight, cfg)
    assert near > far and far < 0.01  # only the 0.001 x norm term remains
    relabelled = torch.where(inst == 5, 77, torch.where(inst == 900, 2, 0))
    torch.testing.assert_close(discriminative_loss(emb, relabelled, weight, cfg), near)
    noisy = emb * 3 + torch.randn_like(emb)
    assert discriminative_loss(noisy, inst, weight, cfg) > far  # spread clusters are pulled


def test_discriminative_loss_empty_is_zero_and_differentiable():
    emb = torch.randn(2, 4, 6, 6, requires_grad=True)
    loss = discriminative_loss(emb, torch.zeros(2, 6, 6, dtype=torch.long), torch.ones(2, 6, 6), LossConfig())
    assert loss == 0
    loss.backward()
    assert torch.isfinite(emb.grad).all()
