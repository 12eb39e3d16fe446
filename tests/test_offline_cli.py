"""`heron train ALGO --dataset ...`: one-line errors, an end-to-end tracked run, and exact resume
after SIGKILL (the pattern of tests/test_cli.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offline_data import random_dataset

from heron.cli.main import main
from heron.data.minari_io import save_dataset

HERON = [sys.executable, "-m", "heron.cli.main"]
SMALL = ["actor_hidden=16,16", "critic_hidden=16,16", "batch_size=32"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pendulum-random"
    save_dataset(random_dataset(num_episodes=10), path)
    return path


@pytest.mark.parametrize("argv, message", [
    (["train", "sac", "--dataset", "{ds}"], "sac is an online (off_policy) algorithm and cannot learn from --dataset"),
    (["train", "iql", "--env", "Pendulum-v1"], "iql learns from a dataset"),
    (["train", "iql"], "missing --dataset: iql learns from a dataset"),
    (["train", "iql", "--dataset", "no/such/dataset"], "no dataset at 'no/such/dataset'"),
    (["train", "td3bc", "--dataset", "{ds}", "--env", "CartPole-v1"], "does not fit env CartPole-v1"),
    (["train", "td3bc", "--dataset", "{ds}", "--env", "MountainCarContinuous-v0"],
     "does not fit env MountainCarContinuous-v0: observations (3,) vs (2,)"),
    (["train", "iql", "--dataset", "{ds}", "--loop", "host"], "--loop host applies to online training"),
    (["train", "iql", "--dataset", "{ds}", "expectile=1.5"], "expectile must be in (0, 1)"),
    (["train", "bc", "--dataset", "{ds}", "policy=stochastic"], "bad value 'stochastic' for policy"),
])
def test_bad_offline_input_is_one_line_and_exit_2(argv, message, dataset_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path))
    assert main([a.replace("{ds}", str(dataset_dir)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heron: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed command must not leave a run directory behind"


def _final_state_bytes(run_dir: Path) -> bytes:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    return (run_dir / "checkpoints" / latest / "state.msgpack").read_bytes()


def _rows(run_dir: Path, name: str) -> list[str]:
    lines = (run_dir / name).read_text().splitlines()
    return [",".join(line.split(",")[:3]) for line in lines if "time/" not in line]  # drop wall times, speeds


def test_offline_run_end_to_end_then_sigkill_resume_equals_uninterrupted(dataset_dir, tmp_path):
    env = dict(os.environ, HERON_RUNS_DIR=str(tmp_path / "runs"))
    args = ["train", "iql", "--dataset", str(dataset_dir), "--steps", "20000", "--seeds", "2", "--checkpoint-every",
            "2000", "--eval-every", "10000", "--eval-episodes", "2", "--log-every", "1000", "--no-progress",
            *SMALL, "value_hidden=16,16"]

    full = subprocess.run(HERON + args, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    full_dir = Path(full.stdout.strip().splitlines()[-1])
    config = json.loads((full_dir / "config.json").read_text())
    provenance = json.loads((full_dir / "provenance.json").read_text())
    assert config["loop"] == "offline" and config["env"] == "Pendulum-v1"  # --env defaulted to the dataset's
    assert config["agent"]["total_updates"] == 20000  # the cosine schedule spans the run
    assert provenance["dataset"]["sha256"]["data/main_data.hdf5"] == config["dataset"]["sha256"]["data/main_data.hdf5"]
    assert len(provenance["dataset"]["sha256"]["heron.json"]) == 64
    report = (full_dir / "report.md").read_text()
    assert "normalised score" in report and "pendulum-random" in report
    assert any("eval/normalized_score/seed1" in row for row in _rows(full_dir, "metrics.csv"))
    assert any("offline/behaviour_mse" in row for row in _rows(full_dir, "metrics.csv"))
    # each seed's episodes under its own seed: step,seed,episode for 2 evaluations x 2 seeds x 2 episodes
    assert _rows(full_dir, "eval.csv")[1:] == [f"{t},{s},{e}" for t in (10000, 20000) for s in (0, 1) for e in (0, 1)]

    proc = subprocess.Popen(HERON + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs, killed_dir = tmp_path / "runs", None
    deadline = time.time() + 300
    while time.time() < deadline and killed_dir is None:
        for d in runs.iterdir():
            ckpts = d / "checkpoints"
            if d != full_dir and ckpts.exists() and any(p.name == "step_000000002000" for p in ckpts.iterdir()):
                killed_dir = d
        time.sleep(0.02)
    assert killed_dir is not None, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "killed" in subprocess.run(HERON + ["runs", "list"], env=env, capture_output=True, text=True).stdout

    resumed = subprocess.run(HERON + ["train", "--resume", str(killed_dir), "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _final_state_bytes(full_dir) == _final_state_bytes(killed_dir)  # agents, keys and counter, bit for bit
    assert _rows(full_dir, "metrics.csv") == _rows(killed_dir, "metrics.csv")
    evals = (full_dir / "eval.csv").read_text().splitlines()
    assert len(evals) == 1 + 2 * 2 * 2  # header + 2 evaluations x 2 seeds x 2 episodes
    assert evals == (killed_dir / "eval.csv").read_text().splitlines()

    out = subprocess.run(HERON + ["eval", str(full_dir), "--episodes", "2"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "over 4 episodes" in out.stdout, out.stderr


def test_resume_refuses_a_changed_dataset(dataset_dir, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path / "runs"))
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    assert main(["train", "bc", "--dataset", str(data), "--steps", "50", "--env", "none", "--no-progress",
                 "actor_hidden=16,16", "batch_size=32"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((run_dir / "config.json").read_text())["env"] is None  # trained without an env
    # evaluated elsewhere, the env must fit the dataset's spaces, checked before any checkpoint is read
    assert main(["eval", str(run_dir), "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "trained on pendulum-random" in err and "observations (3,) vs (4,)" in err, err
    assert main(["eval", str(run_dir), "--env", "Pendulum-v1", "--episodes", "2"]) == 0
    capsys.readouterr()
    # a hand-edited record of those spaces is one line naming the file, not Minari's parser error
    config_file = run_dir / "config.json"
    kept = config_file.read_text()
    edited = json.loads(kept)
    edited["dataset"]["observation_space"] = '{"type": "Box", "shape": [3'
    config_file.write_text(json.dumps(edited))
    assert main(["eval", str(run_dir), "--env", "Pendulum-v1", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "config.json, dataset: observation_space cannot be read" in err and "restore it" in err, err
    config_file.write_text(kept)
    save_dataset(random_dataset(num_episodes=10, seed=1), data, force=True)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    assert "changed since" in capsys.readouterr().err
