"""Cal-QL and RO2O learn offline→online: a short offline phase on the mixed, mostly random Pendulum
dataset (tests/offline_data.py: 100 = the briefly trained SAC behaviour, 0 = random), then each
algorithm's own switch rule through the CLI (`heron train ALGO --dataset D --offline-steps N
--online-steps M`), and the online phase ends well above the pre-switch score.

Sized for a 2-core CPU (each test ~70 s of CPU, 1.5-2 min wall on shared cores): 64x64 networks,
batch 128, 1500 offline updates, 3000 online env steps (15 episodes), 10 online evaluations of 10
episodes; RO2O with N = 5 critics and n = 5 perturbations (the authors' N = 10, n = 20, batch 256
costs ~230 ms per update here) and 500 warm-up steps instead of 2500. Final = the mean of the last
three online evaluations.

Measured on an Intel Xeon (seeds 0, 1, 2; pre-switch -> final; on the data it made itself before the
data was shipped):
  Cal-QL: -30.0 -> 37.6, -3.2 -> 49.8, -9.1 -> 50.1
  RO2O:   -53.6 -> 31.3, -60.8 -> 35.1, -27.3 -> 21.1
On the shipped data (an AMD EPYC, seed 0): Cal-QL -25.6 -> 29.8, RO2O -51.0 -> 32.6.
(RO2O's offline phase alone reaches 129-150 after 3000-5000 updates with these settings.)
"""

import json
from pathlib import Path

import pytest
from offline_data import mixed_dataset

from heron.cli.main import main
from heron.data.minari_io import save_dataset

pytestmark = pytest.mark.learning

OFFLINE, ONLINE = 1_500, 3_000
SMALL = ["actor_hidden=64,64", "critic_hidden=64,64", "batch_size=128"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    ds, _ = mixed_dataset()
    path = tmp_path_factory.mktemp("data") / "pendulum-mixed"
    save_dataset(ds, path)
    return path


def _run(algo, dataset_dir, tmp_path, capsys, *extra):
    argv = ["train", algo, "--dataset", str(dataset_dir), "--offline-steps", str(OFFLINE), "--online-steps",
            str(ONLINE), "--eval-every", "500", "--eval-episodes", "10", "--no-progress", "--runs-dir", str(tmp_path),
            *SMALL, *extra]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((run_dir / "finetune.json").read_text())
    online = [float(line.split(",")[2]) for line in (run_dir / "metrics.csv").read_text().splitlines()
              if ",eval/normalized_score," in line and int(line.split(",")[0]) > OFFLINE]
    assert len(online) == 10, online
    final = sum(online[-3:]) / 3
    print(algo, summary["pre_switch_score"], online, final)
    return summary, final


def test_calql_improves_online_with_half_offline_batches(dataset_dir, tmp_path, capsys):
    """Cal-QL's own rule: offline data kept, half of each batch offline, UTD 1, return-to-go labels online."""
    summary, final = _run("calql", dataset_dir, tmp_path, capsys)
    assert summary["rule"]["keep_offline_data"] and summary["rule"]["offline_fraction"] == 0.5
    assert final >= summary["pre_switch_score"] + 20.0, (final, summary)
    assert final >= 20.0, (final, summary)


def test_ro2o_improves_online_with_the_same_objective(dataset_dir, tmp_path, capsys):
    """RO2O's own rule (offline data dropped, the same losses, UTD 1) with a 500-step warm-up."""
    summary, final = _run("ro2o", dataset_dir, tmp_path, capsys, "num_critics=5", "num_perturbations=5",
                          "--warmup-steps", "500")
    assert not summary["rule"]["keep_offline_data"] and summary["rule"]["warmup_steps"] == 500
    assert final >= summary["pre_switch_score"] + 20.0, (final, summary)
    assert final >= 5.0, (final, summary)
