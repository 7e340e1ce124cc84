"""Checkpoints (model_/optim_/meta_ files, atomic, rebuilt from JSON) and export-timm."""

from __future__ import annotations

import json

import pytest
import torch

from model import build_model
from model.checkpoint import latest_step, load_checkpoint, save_checkpoint
from model.mae_compat import timm_kwargs
from pipelines.cli import main as cli_main
from tests.model.tiny import tiny_batch, tiny_config


def _trained(tmp_path, **overrides):
    model = build_model(tiny_config(**overrides))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(tiny_batch(2), 0.5)["loss"].backward()
    opt.step()
    return model, opt


def test_save_and_load_round_trip(tmp_path):
    model, opt = _trained(tmp_path, decoder="parallel", label_inputs=True)
    path = save_checkpoint(tmp_path, 12, model, {"epoch": 3}, opt.state_dict())
    assert path == tmp_path / "model_000012.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta_000012.json", "model_000012.pt", "optim_000012.pt"]
    meta = json.loads((tmp_path / "meta_000012.json").read_text())
    assert meta["step"] == 12 and meta["epoch"] == 3 and meta["model_config"]["decoder"] == "parallel"

    loaded, meta2, optim_state = load_checkpoint(tmp_path)
    assert loaded.config == model.config and meta2 == meta
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(optim_state)
    noise = torch.rand(2, 16)
    torch.testing.assert_close(loaded(tiny_batch(2), 0.9, noise=noise)["loss"],
                               model(tiny_batch(2), 0.9, noise=noise)["loss"])


def test_latest_step_and_explicit_steps(tmp_path):
    model, _ = _trained(tmp_path)
    assert latest_step(tmp_path) is None and latest_step(tmp_path / "nope") is None
    for step in (5, 100, 40):
        save_checkpoint(tmp_path, step, model, {"tag": step})
    (tmp_path / "model_000200.pt").write_bytes(b"torn")  # no meta: not a finished checkpoint
    assert latest_step(tmp_path) == 100
    assert load_checkpoint(tmp_path)[1]["tag"] == 100
    assert load_checkpoint(tmp_path, step=5)[1]["tag"] == 5
    _, meta, optim_state = load_checkpoint(tmp_path / "model_000040.pt")
    assert meta["tag"] == 40 and optim_state is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    model, _ = _trained(tmp_path)
    save_checkpoint(tmp_path, 1, model, {})
    with pytest.raises(FileNotFoundError, match="model_000007.pt"):
        (tmp_path / "meta_000007.json").write_text((tmp_path / "meta_000001.json").read_text())
        load_checkpoint(tmp_path, step=7)


def test_export_timm_round_trip_identical_features(tmp_path):
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    model, _ = _trained(tmp_path)
    save_checkpoint(tmp_path / "run", 3, model, {})
    out = tmp_path / "vit.pt"
    assert cli_main(["export-timm", str(tmp_path / "run"), "--out", str(out)]) == 0
    vit = VisionTransformer(**timm_kwargs(model.config)).eval()
    vit.load_state_dict(torch.load(out, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    image = tiny_batch(3)["image"]
    with torch.no_grad():
        tokens = vit.forward_features(image)
        torch.testing.assert_close(tokens, model.encoder(image), rtol=0, atol=1e-6)
        torch.testing.assert_close(vit(image), model.encoder(image)[:, 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(tokens[:, 1:].mean(1), model.forward_features(image), rtol=0, atol=1e-6)
    assert timm.__version__


def test_export_timm_errors(tmp_path, capsys):
    assert cli_main(["export-timm", str(tmp_path / "none"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "c2fmae export-timm: error: checkpoint not found" in capsys.readouterr().err
    assert cli_main(["export-timm", str(tmp_path), "--out", str(tmp_path / "x.bin")]) == 2
    assert "--out must end in" in capsys.readouterr().err


@pytest.mark.parametrize("preset,timm_name", [("c2fmae_vit_tiny16", "vit_tiny_patch16_224"),
                                              ("c2fmae_vit_s16", "vit_small_patch16_224"),
                                              ("mae_vit_b16", "vit_base_patch16_224"),
                                              ("c2fmae_vit_l16", "vit_large_patch16_224"),
                                              ("c2fmae_vit_h14", "vit_huge_patch14_224")])
def test_presets_have_timm_layout(preset, timm_name):
    timm = pytest.importorskip("timm")
    from model.presets import timm_name as name_of

    with torch.device("meta"):
        ours = build_model(preset)
        theirs = timm.create_model(timm_name, num_classes=0)
    assert name_of(ours.config) == timm_name
    assert {k: v.shape for k, v in ours.encoder.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


def test_vit_b16_loads_into_timm_strictly():
    timm = pytest.importorskip("timm")
    from model.vit import VisionTransformer

    encoder = VisionTransformer(224, 16, 768, 12, 12)
    vit = timm.create_model("vit_base_patch16_224", num_classes=0, pretrained=False)
    vit.load_state_dict(encoder.state_dict(), strict=True)
