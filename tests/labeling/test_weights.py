"""The checkpoint registry and downloader's command line (no download is ever attempted)."""

from __future__ import annotations

from pathlib import Path

from labeling.weights import CHECKPOINTS, SAM_DEFAULTS, hf_local_dir, main, weights_dir


def test_weights_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("C2FMAE_WEIGHTS", str(tmp_path))
    assert weights_dir() == tmp_path
    assert hf_local_dir("facebook/x-y") == tmp_path / "hf" / "facebook--x-y"
    monkeypatch.delenv("C2FMAE_WEIGHTS")
    assert weights_dir() == Path.home() / ".cache" / "c2fmae" / "weights"


def test_registry_covers_every_default():
    from labeling.backends.hf_semantic import ARCHITECTURES

    assert {SAM_DEFAULTS[t] for t in ("vit_h", "vit_l", "vit_b")} <= set(CHECKPOINTS)
    sources = {c.source for c in CHECKPOINTS.values()}
    assert {default for _, default in ARCHITECTURES.values()} <= sources
    for c in CHECKPOINTS.values():
        assert c.kind in ("url", "hf")
        assert c.source.startswith("https://") if c.kind == "url" else "/" in c.source


def test_cli_lists_and_rejects_unknown_names(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("labeling.weights.download", None)  # would fail loudly if called
    assert main(["--list"]) == 0
    assert "sam_vit_h" in capsys.readouterr().out
    assert main(["sam_vit_q", "--dir", str(tmp_path)]) == 2
    assert "unknown entries ['sam_vit_q']" in capsys.readouterr().err
    assert main([]) == 2  # nothing asked: list, and say so with the exit code
