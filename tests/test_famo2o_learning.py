"""FamO2O learns offline→online: pre-trained on a mixed, mostly random Pendulum dataset (every balance
β in [1, 5] trained, uniform draws), then continued online under its own rule (offline data kept,
β from the balance model), it ends well above its offline score and above the good behaviour."""

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


def test_famo2o_offline_then_online_improves(dataset_dir, tmp_path, capsys):
    argv = ["train", "famo2o", "--dataset", str(dataset_dir), "--offline-steps", "10000", "--online-steps", "5000",
            "--eval-episodes", "10", "--no-progress", "--runs-dir", str(tmp_path), "actor_hidden=64,64",
            "critic_hidden=64,64", "value_hidden=64,64", "balance_hidden=64,64"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    s = json.loads((run_dir / "finetune.json").read_text())
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    online = [float(line.split(",")[2]) for line in lines
              if ",eval/normalized_score," in line and int(line.split(",")[0]) > 10000]
    beta = [float(line.split(",")[2]) for line in lines if ",train/beta_actor_mean," in line]
    spread = [float(line.split(",")[2]) for line in lines if ",train/beta_state_std," in line]
    final = sum(online[-2:]) / 2  # normalised: 0 = random, 100 = the dataset's good (SAC) episodes
    print(json.dumps(s, indent=1), online, f"β of the policy loss: offline {beta[0]:.2f}, online {beta[-1]:.2f}; "
          f"spread of the balance model's β(s) over a batch's states: {spread[-1]:.2f}")
    assert final >= 100.0, (final, s)
    assert final >= s["pre_switch_score"] + 30.0, (final, s)
    assert spread[-1] >= 0.2, spread  # the balance is state-adaptive: β(s) differs between states
