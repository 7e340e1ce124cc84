"""Masking: MAE/transformers equivalence, guided-masking properties, the curriculum, and
that everything is batched tensor code without host synchronisation."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model import build_model
from model.config import CurriculumConfig
from model.masking import (
    curriculum_probabilities,
    draw_strategy,
    guided_scores,
    make_masking,
    patch_regions,
    random_masking,
)
from tests.model.tiny import tiny_batch, tiny_config

SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "item")


def test_random_masking_equals_transformers_vitmae():
    from transformers import ViTMAEConfig
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    cfg = ViTMAEConfig(image_size=32, patch_size=8, hidden_size=16, num_attention_heads=2, mask_ratio=0.75)
    embeddings = ViTMAEEmbeddings(cfg)
    sequence = torch.randn(5, 16, 16)
    noise = torch.rand(5, 16)
    kept, mask, ids_restore = embeddings.random_masking(sequence, noise)
    ids_keep, our_restore, our_mask = random_masking(noise, int(16 * (1 - 0.75)))
    assert torch.equal(our_restore, ids_restore)
    assert torch.equal(our_mask, mask)
    assert torch.equal(torch.gather(sequence, 1, ids_keep[..., None].expand(-1, -1, 16)), kept)


def test_model_random_masking_uses_mae_noise():
    model = build_model(tiny_config(masking="random"))
    noise = torch.rand(2, 16)
    out = model(tiny_batch(), 0.3, noise=noise)
    _, _, mask = random_masking(noise, 4)
    assert torch.equal(out["mask"], mask)
    assert out["strategy"].tolist() == [0, 0]


def _region_map(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4-patch grid (label map 8x8, 2x2 cells per patch). Patch regions:
    row 0 -> 3, row 1 -> 9, patches (2,0),(2,1) -> 4, the other 6 patches unlabeled (-1)."""
    patches = torch.full((4, 4), -1)
    patches[0], patches[1] = 3, 9
    patches[2, :2] = 4
    labels = patches.repeat_interleave(2, 0).repeat_interleave(2, 1)
    return labels.expand(batch, -1, -1).clone(), patches.flatten()


def test_patch_regions_majority_and_share():
    labels = torch.full((1, 8, 8), -1)
    labels[0, 0:2, 0:2] = torch.tensor([[1, 1], [1, 2]])  # patch 0: 3/4 class 1
    labels[0, 0:2, 2:4] = torch.tensor([[1, 1], [2, 3]])  # patch 1: 1/2 class 1
    labels[0, 0:2, 4:6] = torch.tensor([[0, 1], [2, 3]])  # patch 2: no majority
    labels[0, 0:2, 6:8] = torch.tensor([[-1, -1], [-1, 5]])  # patch 3: mostly unlabeled
    regions = patch_regions(labels, patch=8, min_share=0.5)
    assert regions[0, :4].tolist() == [1, 1, -1, -1]
    assert (regions[0, 4:] == -1).all()


@pytest.mark.parametrize("ratio,expect_only_regions", [(0.5, True), (0.25, True), (0.75, False)])
def test_semantic_guided_masks_whole_regions_in_budget(ratio, expect_only_regions):
    labels, patch_region = _region_map(64)
    cfg = tiny_config(masking="semantic", mask_ratio=ratio)
    g = torch.Generator().manual_seed(1)
    m = make_masking(cfg, 16, 0.0, 64, torch.device("cpu"), semantic=labels,
                     instance=torch.zeros_like(labels), generator=g)
    removed = int(16 - int(16 * (1 - ratio)))
    assert (m.mask.sum(1) == removed).all()  # exactly the budget, every sample
    assert (m.strategy == 1).all()
    labelled = patch_region >= 0
    orders = set()
    for mask in m.mask.bool():
        if expect_only_regions:
            assert not mask[~labelled].any()  # only region patches while regions fill the budget
        else:
            assert mask[labelled].all()  # all regions gone, the rest filled at random
        partial = [r for r in (3, 9, 4) if 0 < mask[patch_region == r].sum() < (patch_region == r).sum()]
        assert len(partial) <= 1  # whole regions, at most one cut by the budget
        orders.add(tuple(mask.tolist()))
    assert len(orders) > 3  # regions drawn in random order


def test_instance_guided_uses_instances_with_arbitrary_ids():
    labels, patch_region = _region_map(32)
    instance = torch.where(labels == 3, 1_000_003, torch.where(labels == 9, 17, torch.where(labels == 4, 5, 0)))
    cfg = tiny_config(masking="instance", mask_ratio=0.5)
    m = make_masking(cfg, 16, 0.0, 32, torch.device("cpu"), semantic=torch.full_like(labels, -1),
                     instance=instance, generator=torch.Generator().manual_seed(0))
    assert (m.mask.sum(1) == 8).all()
    assert not m.mask.bool()[:, patch_region < 0].any()
    assert (m.strategy == 2).all()


def test_guided_masking_is_reproducible_with_a_seed():
    labels, _ = _region_map(16)
    cfg = tiny_config(masking="curriculum")

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return make_masking(cfg, 16, 0.35, 16, torch.device("cpu"), semantic=labels,
                            instance=labels.clamp(min=0), generator=g)

    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_keep, b.ids_keep)
    assert torch.equal(a.strategy, b.strategy)
    assert not torch.equal(a.mask, c.mask)


def test_guided_scores_without_regions_is_random_masking():
    noise = torch.rand(3, 16)
    scores = guided_scores(torch.full((3, 16), -1), noise, torch.rand(3, 16))
    assert torch.equal(scores, noise)


def test_curriculum_moves_semantic_to_instance_to_random():
    cfg = CurriculumConfig()  # boundaries (0.3, 0.6), transition 0.2
    assert curriculum_probabilities(0.0, cfg) == (0.0, 1.0, 0.0)
    assert curriculum_probabilities(0.45, cfg) == (0.0, 0.0, 1.0)
    assert curriculum_probabilities(1.0, cfg) == (1.0, 0.0, 0.0)
    ts = [i / 1000 for i in range(1001)]
    probs = [curriculum_probabilities(t, cfg) for t in ts]
    assert all(abs(sum(p) - 1) < 1e-9 and min(p) >= 0 for p in probs)
    for k in range(3):
        jumps = max(abs(a[k] - b[k]) for a, b in zip(probs, probs[1:]))
        assert jumps < 0.01  # smooth
    assert all(a[1] >= b[1] and a[0] <= b[0] for a, b in zip(probs, probs[1:]))  # monotone
    step = CurriculumConfig(shape="step")
    assert curriculum_probabilities(0.29, step) == (0.0, 1.0, 0.0)
    assert curriculum_probabilities(0.31, step) == (0.0, 0.0, 1.0)


def test_drawn_strategies_follow_probabilities():
    g = torch.Generator().manual_seed(0)
    s = draw_strategy((0.2, 0.5, 0.3), 20000, torch.device("cpu"), g)
    freq = torch.bincount(s, minlength=3).float() / s.numel()
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.02, rtol=0)


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def _ops_of(fn) -> list[str]:
    with _OpLog() as log:
        fn()
    return log.ops


@pytest.mark.parametrize("masking", ["curriculum", "semantic", "instance", "random"])
def test_masking_is_vectorised_without_host_sync(masking):
    cfg = tiny_config(masking=masking)

    def run(b):
        data = tiny_batch(b)
        return lambda: make_masking(cfg, 16, 0.35, b, torch.device("cpu"), data["semantic"], data["instance"])

    small, large = _ops_of(run(2)), _ops_of(run(16))
    assert small == large  # the same ops whatever the batch size: no per-sample loop
    assert not [op for op in small if op.split(".")[0].lstrip("_") in SYNC_OPS or "local_scalar" in op]


@pytest.mark.parametrize("overrides", [{}, {"decoder": "parallel", "label_inputs": True},
                                       {"decoder": "mae", "masking": "random"}])
def test_model_forward_has_no_host_sync(overrides):
    model = build_model(tiny_config(**overrides))

    def step(b):
        data = tiny_batch(b)
        model.zero_grad(set_to_none=True)
        return lambda: model(data, 0.35)["loss"].backward()

    ops2 = _ops_of(step(2))
    ops4 = _ops_of(step(4))
    assert ops2 == ops4
    assert not [op for op in ops2 if "local_scalar" in op or op.split(".")[0] in ("nonzero", "masked_select")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_sync_on_cuda():
    model = build_model(tiny_config()).cuda()
    data = {k: v.cuda() for k, v in tiny_batch(8).items()}
    model(data, 0.35)["loss"].backward()  # warm up (lazy init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        make_masking(model.config, 16, 0.35, 8, data["image"].device, data["semantic"], data["instance"])
        model(data, 0.35)["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
