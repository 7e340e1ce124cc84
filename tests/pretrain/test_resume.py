"""Kill-and-resume: a run killed with SIGKILL and resumed gives the losses of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from model.checkpoint import latest_step
from model.training import TrainConfig, Trainer
from model.training.logs import read_metrics
from pipelines import cli
from tests.pretrain.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
STEPS = 15


def run_config(photo_dir: Path, output: Path) -> dict:
    # two loader workers, so the saved position covers several readers mid-epoch
    return tiny_config(photo_dir, output, steps=STEPS, ckpt_every=3, keep_checkpoints=0,
                       **{"data.num_workers": 2, "data.unit_rows": 4})


def kill_after_checkpoint(config_file: Path, ckpt_dir: Path, min_step: int) -> int:
    """Start `c2fmae pretrain` in a subprocess and SIGKILL it once step `min_step` is saved."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "pretrain", "--config", str(config_file)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while (latest_step(ckpt_dir) or 0) < min_step:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint within 120 s")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader workers, no clean-up
    proc.wait()
    return latest_step(ckpt_dir)


def test_kill_and_resume_gives_the_losses_of_an_uninterrupted_run(photo_dir, tmp_path):
    reference = tmp_path / "reference"
    Trainer(TrainConfig.from_dict(run_config(photo_dir, reference))).fit()
    expected = {r["step"]: r for r in read_metrics(reference)}

    run = tmp_path / "run"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(run_config(photo_dir, run)))
    killed_at = kill_after_checkpoint(config_file, run / "checkpoints", min_step=6)
    if killed_at >= STEPS:
        pytest.skip("the run finished before it could be killed")
    assert cli.main(["pretrain", "--config", str(config_file), "--resume"]) == 0
    got = {r["step"]: r for r in read_metrics(run)}
    assert sorted(got) == list(range(1, STEPS + 1))  # lines past the checkpoint were replaced
    after = [s for s in got if s > killed_at]
    assert len(after) >= 3
    for step in after:
        for key in ("loss", "loss_semantic", "loss_instance", "loss_pixel", "lr"):
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
