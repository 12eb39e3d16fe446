"""`heron tune`: search spaces, IQM objectives, resumable studies, pruning, Pareto fronts, Ray trials."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import optuna
import pytest

from heron.cli.main import main
from heron.errors import HeronError
from heron.experiments.bench_report import per_seed_scores
from heron.experiments.tune import (
    Param,
    TuneRequest,
    _cells,
    parse_param,
    run_trial,
    tune,
    tune_dir,
)
from heron.tracking.query import eval_rows

BASE = ["tune", "ppo", "--env", "CartPole-v1", "--steps", "1024", "--seeds", "2", "--evaluations", "2",
        "--eval-episodes", "3", "--param", "learning_rate=float:1e-4:1e-2:log", "num_envs=2"]


def test_parse_param():
    assert parse_param("learning_rate=float:1e-5:1e-2:log") == Param("learning_rate", "float", 1e-5, 1e-2, True)
    assert parse_param("batch_size=int:32:512") == Param("batch_size", "int", 32, 512, False)
    assert parse_param("actor_hidden=choice:64,64|256,256").choices == ("64,64", "256,256")
    for bad in ("lr", "lr=float:1", "lr=float:2:1", "lr=float:0:1:log", "lr=float:a:b", "n=int:1.5:4",
                "lr=float:1:2:lin", "x=choice:a"):
        with pytest.raises(HeronError, match="--param"):
            parse_param(bad)


@pytest.mark.parametrize("argv, message", [
    (["tune", "ppo", "--trials", "2", "--steps", "10"], "--env ID"),
    (["tune", "iql", "--env", "Pendulum-v1", "--trials", "2", "--steps", "10"], "--dataset"),
    (BASE[:-1] + ["--trials", "1", "--param", "nope=float:1:2"], "no hyperparameter 'nope'"),
    (BASE + ["--trials", "1", "learning_rate=0.1"], "both searched"),
    (BASE + ["--trials", "1", "--objective", "final", "--objective", "time", "--pruner", "median"], "single objective"),
    (BASE + ["--trials", "0"], "--trials must be >= 1"),
    (["tune", "ppo", "--env", "NoSuchEnv-v0", "--trials", "1", "--steps", "10"], "NoSuchEnv-v0"),
    # every trial would end before SAC's first update (learning_starts=5000)
    (["tune", "sac", "--env", "Pendulum-v1", "--trials", "2", "--steps", "1000"], "takes its first update after"),
    (["tune", "wsrl", "--dataset", "d", "--trials", "2", "--steps", "10", "--online-steps", "100"],
     "covers all 100 online steps"),
    (["tune", "h2o", "--dataset", "d", "--trials", "2", "--steps", "10", "--online-steps", "100"],
     "no offline-only phase"),
    (["tune", "iql", "--dataset", "d", "--trials", "2", "--steps", "10", "--eval-env", "Pendulum-v1"],
     "--eval-env applies to online and offline→online trials"),
    (["tune", "iql", "--dataset", "d", "--trials", "2", "--steps", "10", "--online-steps", "100", "--eval-env",
      "Pendulum-v9"], "Pendulum-v9"),
])
def test_bad_requests_exit_2_and_make_no_study(tmp_path, capsys, argv, message):
    assert main(argv + ["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def _trials(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_study_objective_is_the_iqm_over_seeds_and_resumes(tmp_path, capsys):
    root = tmp_path / "tune"
    assert main(BASE + ["--trials", "2", "--root", str(root)]) == 0
    out = tune_dir(TuneRequest("ppo", "CartPole-v1", None, 1024, 2), root)
    first = _trials(out)
    assert [t["state"] for t in first] == ["COMPLETE", "COMPLETE"]
    # the objective recomputed from the trial's run: IQM over the 2 seeds of the last evaluation
    overrides = tuple(first[0]["overrides"].split())
    (cell,) = _cells(TuneRequest("ppo", "CartPole-v1", None, 1024, 2, seeds=2, evaluations=2, eval_episodes=3),
                     overrides)
    (run,) = [p for p in (out / "runs" / cell.key).iterdir()]
    _, curve, _ = per_seed_scores(run, 2)
    assert float(first[0]["final"]) == pytest.approx(float(np.mean(curve[-1])))  # IQM of 2 values = their mean
    # the same command with more trials continues the study; earlier trials are kept as they were
    assert main(BASE + ["--trials", "3", "--root", str(root)]) == 0
    again = _trials(out)
    assert len(again) == 3 and again[:2] == first
    # other settings under the same study name are refused
    assert main(BASE[:5] + ["2048"] + BASE[6:] + ["--trials", "4", "--root", str(root)]) == 2
    assert "other settings (steps)" in capsys.readouterr().err


def test_pruned_trial_stops_its_run(tmp_path):
    """A trial the pruner stops ends as pruned, and its run stops at the first evaluation."""
    req = TuneRequest("ppo", "CartPole-v1", None, 1024, 1, seeds=1, evaluations=4, eval_episodes=2)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    pruner = optuna.pruners.ThresholdPruner(lower=1e9)  # prunes at every report
    study = optuna.create_study(study_name="s", storage=storage, pruner=pruner)
    trial = study.ask()
    cells = _cells(req, ("num_envs=2",))
    outcome = run_trial(str(tmp_path), cells, ("final",),
                        {"storage": storage, "study": "s", "trial_id": trial._trial_id, "pruner": pruner})
    assert outcome["state"] == "pruned", outcome
    (run,) = [p for p in (tmp_path / "runs" / cells[0].key).iterdir()]
    assert [step for step, _ in eval_rows(run)] == [256]
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert list(study.trials[0].intermediate_values) == [256]


def test_multi_objective_study_writes_a_pareto_front(tmp_path):
    req = TuneRequest("ppo", "CartPole-v1", None, 1024, 3, seeds=2, evaluations=2, eval_episodes=3,
                      params=("learning_rate=float:1e-4:1e-2:log",), overrides=("num_envs=2",),
                      objectives=("final", "time"))
    out = tune(req, root=tmp_path)
    summary = json.loads((out / "best.json").read_text())
    front = summary["pareto_front"]
    assert summary["complete"] == 3 and front
    rows = _trials(out)
    for t in front:  # no completed trial dominates a front member
        for r in rows:
            if int(r["number"]) == t["number"]:
                assert float(r["final"]) == t["values"]["final"] and float(r["time"]) == t["values"]["time"]
                continue
            better = float(r["final"]) >= t["values"]["final"] and float(r["time"]) <= t["values"]["time"]
            strictly = float(r["final"]) > t["values"]["final"] or float(r["time"]) < t["values"]["time"]
            assert not (better and strictly), (t, r)


def test_trial_left_running_by_a_dead_process_is_failed_and_retried(tmp_path):
    req = TuneRequest("ppo", "CartPole-v1", None, 1024, 1, seeds=1, evaluations=1, eval_episodes=2,
                      params=("learning_rate=float:1e-4:1e-2:log",), overrides=("num_envs=2",))
    out = tune_dir(req, tmp_path)
    out.mkdir(parents=True)
    study = optuna.create_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}",
                                directions=["maximize"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": dead.pid})
    lr = trial.params["learning_rate"]
    tune(req, root=tmp_path)
    rows = _trials(out)
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert f"learning_rate={lr!r}" in rows[1]["overrides"]


def test_trials_run_on_ray_workers(tmp_path):
    req = TuneRequest("ppo", "CartPole-v1", None, 1024, 2, seeds=1, evaluations=1, eval_episodes=2,
                      params=("learning_rate=float:1e-4:1e-2:log",), overrides=("num_envs=2",), pruner="none")
    out = tune(req, root=tmp_path, workers=2)
    rows = _trials(out)
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    # each trial's run was made by a Ray worker process, not this one
    pids = {json.loads((p / "status.json").read_text())["pid"] for p in (out / "runs").glob("*/*")}
    assert pids and os.getpid() not in pids
