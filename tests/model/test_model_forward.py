"""The model's contract: outputs, gradients, ablation switches, errors, and one-batch overfit."""

from __future__ import annotations

import pytest
import torch

from model import MODELS, build_model
from model.layers import patchify
from model.losses import pixel_target
from tests.model.tiny import NUM_CLASSES, tiny_batch, tiny_config

CONFIGS = {
    "cascaded": {},
    "parallel": {"decoder": "parallel"},
    "cascaded+label_inputs": {"label_inputs": True},
    "parallel+label_inputs+random": {"decoder": "parallel", "label_inputs": True, "masking": "random"},
    "semantic_masking+pixels_everywhere": {"masking": "semantic", "loss": {"masked_only": False, "norm_pix_loss": False}},
    "patch14": {"img_size": 56, "patch_size": 14, "label_inputs": True},
    "mae": {"decoder": "mae", "masking": "random"},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_outputs_follow_the_contract(name):
    cfg = tiny_config(**CONFIGS[name])
    model = build_model(cfg)
    img = cfg.img_size
    batch = tiny_batch(3, img=img)
    if cfg.decoder == "mae":
        batch = {"image": batch["image"]}
    out = model(batch, 0.4)
    L, p = (img // cfg.patch_size) ** 2, cfg.patch_size
    assert out["loss"].shape == () and out["loss"].requires_grad
    for key in ("loss_semantic", "loss_instance", "loss_pixel"):
        assert out[key].shape == () and torch.isfinite(out[key])
    assert out["mask"].shape == (3, L) and set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert (out["mask"].sum(1) == L - int(L * 0.25)).all()
    assert out["pred_pixel"].shape == (3, L, p * p * 3)
    assert out["strategy"].shape == (3,) and out["strategy"].dtype == torch.long
    if cfg.decoder == "mae":
        assert out["pred_semantic"] is None and out["loss_semantic"] == 0 and out["loss_instance"] == 0
    else:
        assert out["pred_semantic"].shape == (3, NUM_CLASSES, img // 4, img // 4)
        assert out["pred_instance"].shape == (3, img // 4, img // 4)
        assert out["pred_embedding"].shape == (3, 4, img // 4, img // 4)
        assert out["loss_semantic"] > 0 and out["loss_instance"] > 0


@pytest.mark.parametrize("name", CONFIGS)
def test_every_parameter_gets_a_gradient(name):
    cfg = tiny_config(**CONFIGS[name])
    model = build_model(cfg)
    model(tiny_batch(2, img=cfg.img_size), 0.4)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_forward_features_is_the_unmasked_mean_token():
    model = build_model(tiny_config()).eval()
    image = tiny_batch(2)["image"]
    feats = model.forward_features(image)
    assert feats.shape == (2, 32)
    torch.testing.assert_close(feats, model.encoder(image)[:, 1:].mean(1))
    torch.testing.assert_close(model.forward_features(image[:1]), feats[:1], rtol=1e-5, atol=1e-6)


def _perturb_semantic_stage(model):
    with torch.no_grad():
        for p in model.decoder.stages[0].parameters():
            p.add_(torch.randn_like(p))


@pytest.mark.parametrize("decoder,linked", [("cascaded", True), ("parallel", False)])
def test_cascade_links_stages_and_parallel_does_not(decoder, linked):
    model = build_model(tiny_config(decoder=decoder, masking="random"))
    data, noise = tiny_batch(2), torch.rand(2, 16)
    before = model(data, 0.0, noise=noise)
    _perturb_semantic_stage(model)
    after = model(data, 0.0, noise=noise)
    changed = not torch.allclose(before["pred_pixel"], after["pred_pixel"])
    assert changed == linked
    assert not torch.allclose(before["pred_semantic"], after["pred_semantic"])


def test_label_inputs_see_only_visible_patches():
    """Changing the label maps inside removed patches changes no prediction."""
    model = build_model(tiny_config(label_inputs=True, masking="random"))
    data, noise = tiny_batch(2), torch.rand(2, 16)
    out = model(data, 0.0, noise=noise)
    removed_cells = out["mask"].reshape(2, 4, 4).repeat_interleave(2, 1).repeat_interleave(2, 2).bool()
    edited = dict(data)
    edited["semantic"] = torch.where(removed_cells, (data["semantic"] + 1) % NUM_CLASSES, data["semantic"])
    edited["instance"] = torch.where(removed_cells, data["instance"] + 99, data["instance"])
    out2 = model(edited, 0.0, noise=noise)
    torch.testing.assert_close(out2["pred_pixel"], out["pred_pixel"])
    torch.testing.assert_close(out2["pred_semantic"], out["pred_semantic"])
    edited["semantic"] = torch.where(~removed_cells, (data["semantic"] + 1) % NUM_CLASSES, data["semantic"])
    assert not torch.allclose(model(edited, 0.0, noise=noise)["pred_pixel"], out["pred_pixel"])


def test_reconstruction_inverts_norm_pix_target():
    model = build_model(tiny_config())
    data = tiny_batch(2)
    out = model(data, 0.5)
    out["pred_pixel"] = pixel_target(patchify(data["image"], 8), True)
    torch.testing.assert_close(model.reconstruction(out, data["image"]), data["image"], rtol=1e-4, atol=1e-4)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model(tiny_config(masking="curriculum"))
    data, noise = tiny_batch(4), torch.rand(4, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    keys = ("loss_pixel", "loss_semantic", "loss_instance")
    start = None
    for _ in range(160):
        out = model(data, 0.35, noise=noise, generator=torch.Generator().manual_seed(0))
        start = start or {k: out[k].item() for k in keys}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    end = {k: out[k].item() for k in keys}
    for k in keys:
        assert end[k] < 0.2 * start[k], (k, start[k], end[k])


def test_presets_build_their_configs():
    for name in ("c2fmae_vit_tiny16", "c2fmae_vit_s16", "c2fmae_vit_b16", "c2fmae_vit_l16",
                 "c2fmae_vit_h14", "mae_vit_b16", "mae_vit_tiny16"):
        assert name in MODELS
    with torch.device("meta"):
        b16 = build_model("c2fmae_vit_b16")
        mae = build_model("mae_vit_b16")
        h14 = build_model("c2fmae_vit_h14")
    enc = sum(p.numel() for p in b16.encoder.parameters())
    assert 85e6 < enc < 87e6 and enc == sum(p.numel() for p in mae.encoder.parameters())
    assert h14.config.patch_size == 14 and h14.grid == 16 and h14.cell == 2


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b.pop("semantic"), "needs batch\\['semantic'\\]"),
    (lambda b: b.update(instance=b["instance"].float()), "batch\\['instance'\\] must be a long tensor"),
    (lambda b: b.update(image=b["image"][:, :, :16]), "batch\\['image'\\] must be"),
])
def test_bad_batches_raise_clear_errors(mutate, message):
    model = build_model(tiny_config())
    data = tiny_batch(2)
    mutate(data)
    with pytest.raises(ValueError, match=message):
        model(data, 0.1)


def test_bad_progress_and_names_raise():
    model = build_model(tiny_config())
    with pytest.raises(ValueError, match="progress must be in"):
        model(tiny_batch(2), 1.5)
    with pytest.raises(ValueError, match="unknown model preset 'vit_zz'"):
        build_model("vit_zz")
