"""Offline→online learns: IQL pre-trained on a mixed, mostly random Pendulum dataset, then continued
online under WSRL's switch (no offline data, warm-up rollouts, UTD 4), ends above its offline score."""

import json
from pathlib import Path

import pytest
from offline_data import mixed_dataset

from heron.cli.main import main
from heron.data.minari_io import save_dataset

pytestmark = pytest.mark.learning


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    ds, _ = mixed_dataset()
    path = tmp_path_factory.mktemp("data") / "pendulum-mixed"
    save_dataset(ds, path)
    return path


def test_iql_then_wsrl_switch_improves_online(dataset_dir, tmp_path, capsys):
    argv = ["train", "iql", "--dataset", str(dataset_dir), "--offline-steps", "10000", "--online-steps", "8000",
            "--finetune-method", "wsrl", "--warmup-steps", "1000", "--eval-episodes", "10", "--no-progress",
            "--runs-dir", str(tmp_path), "actor_hidden=64,64", "critic_hidden=64,64"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    s = json.loads((run_dir / "finetune.json").read_text())
    print(json.dumps(s, indent=1))
    online = [float(line.split(",")[2]) for line in (run_dir / "metrics.csv").read_text().splitlines()
              if ",eval/normalized_score," in line and int(line.split(",")[0]) > 10000]
    final = sum(online[-2:]) / 2  # the last two online evaluations (8000 env steps = 40 episodes)
    assert final >= s["pre_switch_score"] + 5.0, (final, s)
    assert final >= 80.0, (final, s)
    # the dip at the switch stays under half the pre-switch score
    assert s["dip_percent"] < 50.0, s


def test_rlpd_learns_online_from_symmetric_batches(dataset_dir, tmp_path, capsys):
    """RLPD with no pre-training (--steps 0), a reduced ensemble and UTD for CPU (E = 4, G = 4, 64x64)."""
    argv = ["train", "rlpd", "--dataset", str(dataset_dir), "--steps", "0", "--online-steps", "3000",
            "--warmup-steps", "500", "--eval-episodes", "10", "--no-progress", "--runs-dir", str(tmp_path),
            "actor_hidden=64,64", "critic_hidden=64,64", "num_critics=4", "utd_ratio=4", "batch_size=512"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    scores = [float(line.split(",")[2]) for line in (run_dir / "metrics.csv").read_text().splitlines()
              if ",eval/normalized_score," in line]
    print(scores)
    assert len(scores) == 10 and sum(scores[-2:]) / 2 >= 80.0, scores
