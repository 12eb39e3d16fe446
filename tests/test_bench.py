"""Benchmark suites: declaration checks, skip/resume of cells, reports, and Ray workers killed mid-run."""

import dataclasses
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from heron.cli.main import main
from heron.errors import HeronError
from heron.experiments.bench import (
    cell_runs,
    load_suite,
    parse_suite,
    run_suite,
    shipped_reference_file,
    suite_dir,
)
from heron.experiments.bench_report import write_report
from heron.tracking.run import read_status

TINY = """
name = "tiny"
description = "PPO and DQN on CartPole, a few thousand steps"
seeds = 2
eval_episodes = 3
[references."CartPole-v1"]
random = 22.0
expert = 500.0
[[grid]]
algos = ["ppo", "dqn"]
envs = ["CartPole-v1"]
steps = 2048
overrides = { dqn = ["learning_starts=500"] }
"""

# SAC in the host loop: long enough (a few seconds between checkpoints) to be killed mid-run.
KILLABLE = """
name = "killable"
seeds = [0, 1]
eval_episodes = 2
checkpoint_fraction = 0.25
[references."Pendulum-v1"]
random = -1243.3
expert = -154.8
[[grid]]
algos = ["sac"]
envs = ["Pendulum-v1"]
steps = 1600
loop = "host"
overrides = { sac = ["learning_starts=200", "actor_hidden=32,32", "critic_hidden=32,32"] }
"""


def _write(tmp_path, text, name="suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("mutation, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"seeds": 0}, "seeds must be"),
    ({"seeds": [1, 1]}, "seeds must be"),
    ({"name": "a b"}, "name must be a plain word"),
    ({"grid": []}, "at least one [[grid]]"),
    ({"grid": [{"algos": ["ppo"], "steps": 10}]}, "either envs"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "datasets": ["d"], "steps": 10}]}, "either envs"),
    ({"grid": [{"algos": ["nope"], "envs": ["CartPole-v1"], "steps": 10}]}, "nope"),
    ({"grid": [{"algos": ["iql"], "envs": ["Pendulum-v1"], "steps": 10}]}, "iql is offline"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 0}]}, "steps"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "overrides": {"dqn": ["x=1"]}}]},
     "overrides.dqn"),
    ({"references": {"CartPole-v1": {"random": 1.0}}}, "references.CartPole-v1"),
    ({"grid": [{"algos": ["iql"], "datasets": ["d"], "steps": 10, "warmup_steps": 5}]}, "apply to blocks with online"),
    # SAC's first update comes after 5000 env steps: a 2000-step cell would learn nothing
    ({"grid": [{"algos": ["sac"], "envs": ["Pendulum-v1"], "steps": 2000}]}, "sac takes its first update after"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "overrides": {"ppo": ["gama=0.9"]}}]},
     "did you mean gamma"),
    ({"grid": [{"algos": ["iql"], "datasets": ["d"], "steps": 10, "online_steps": 9, "warmup_steps": -1}]},
     "warmup_steps must be >= 0"),
    # WSRL's own warm-up (5000 steps) would fill a 100-step online phase: no update would ever run
    ({"grid": [{"algos": ["wsrl"], "datasets": ["d"], "steps": 10, "online_steps": 100}]},
     "wsrl: the switch rule's warm-up (5000 env steps"),
    ({"grid": [{"algos": ["iql"], "datasets": ["d"], "steps": 10, "online_steps": 100, "finetune_method": "wsrl",
                "warmup_steps": 100}]}, "covers all 100 online steps"),
    ({"grid": [{"algos": ["rcsl"], "datasets": ["d"], "steps": 10, "online_steps": 100}]}, "cannot continue online"),
    ({"grid": [{"algos": ["iql"], "datasets": ["d"], "steps": 10, "eval_env": "Pendulum-v1"}]},
     "eval_env applies to env blocks and to dataset blocks with online_steps"),
    ({"grid": [{"algos": ["ppo", "dqn"], "envs": ["CartPole-v1"], "steps": 10, "label": "x"}]}, "split the block's 2"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "label": "a b"}]}, "a plain word"),
    # the same method under two settings would pool in reports unless one block names itself
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10},
               {"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "overrides": {"ppo": ["gamma=0.9"]}}]},
     "two blocks run ppo on CartPole-v1 with different settings; give one of them a label"),
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "label": "x"},
               {"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 20, "label": "x"}]}, "different labels (both are 'x')"),
    # seeds trained together (one cell) beside an online block (a cell per seed) still pool under one label
    ({"vmap_seeds": True, "grid": [{"algos": ["iql"], "datasets": ["d"], "steps": 10},
                                   {"algos": ["iql"], "datasets": ["d"], "steps": 10, "online_steps": 100}]},
     "two blocks run iql on d"),
    # a label only names results: the same settings under a label are the same runs
    ({"grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10},
               {"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10, "label": "x"}]}, "declares the same cell twice"),
])
def test_bad_suite_declarations_name_the_problem(mutation, message):
    raw = {"name": "s", "grid": [{"algos": ["ppo"], "envs": ["CartPole-v1"], "steps": 10}], **mutation}
    with pytest.raises(HeronError, match=re.escape(message)):
        parse_suite(raw)


def test_cli_rejects_missing_suite_and_bad_toml(tmp_path, capsys):
    assert main(["bench", "run", str(tmp_path / "nope.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    assert main(["bench", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no suite" in err[0] and "not valid TOML" in err[1], err


def test_shipped_suites_parse():
    from heron.experiments.bench import shipped_suites

    names = shipped_suites()
    assert {"online-classic", "offline-small", "offline-to-online-small"} <= set(names), names
    for name in names:
        suite = load_suite(name)
        assert suite.cells and len({c.key for c in suite.cells}) == len(suite.cells)


def test_shipped_references_that_record_settings_match_todays_defaults():
    """A reference's scores measure the code that made them: change an agent's default and the references that
    ran it are stale. Remake the reference (`heron bench run` + `heron bench report`, copy scores.json) or, when
    remaking costs too much, drop its "settings" so reports say they cannot tell."""
    from heron.agents import get_agent
    from heron.config import config_to_dict
    from heron.experiments.bench import shipped_suites
    from heron.experiments.train import resolve_agent_config

    checked = 0
    for name in shipped_suites():
        path = shipped_reference_file(name)
        recorded = json.loads(path.read_text()).get("settings") if path is not None else None
        for cell in load_suite(name).cells if recorded else ():
            ours = config_to_dict(resolve_agent_config(get_agent(cell.algo), cell.overrides, cell.steps))
            theirs = recorded[f"{cell.label}|{cell.task}"]
            assert json.loads(json.dumps(ours)) == theirs, (name, cell.label, cell.task,
                                                           {k: (v, theirs.get(k)) for k, v in ours.items()
                                                            if theirs.get(k) != v})
            checked += 1
    assert checked >= 12  # offline-quick's cells at least


def test_bench_list_marks_the_suites_that_ship_reference_results(capsys):
    from heron.experiments.bench import shipped_suites

    assert main(["bench", "list"]) == 0
    columns = {line.split()[0]: line.split()[3] for line in capsys.readouterr().out.splitlines()}
    assert set(columns) == set(shipped_suites())
    assert columns["online-classic"] == "reference" and columns["offline-small"] == "-"
    assert all((mark == "reference") == (shipped_reference_file(name) is not None) for name, mark in columns.items())


def test_warmup_steps_reach_the_run_and_leave_earlier_cell_keys_alone():
    suite = load_suite("offline-to-online-quick")
    wsrl = [c for c in suite.cells if c.algo == "wsrl"]
    assert wsrl and all(c.warmup_steps == 1000 and c.request().warmup_steps == 1000 for c in wsrl)
    # A block without warmup_steps keeps the key it had before the field existed, so the runs of
    # suites started then are still found (this key names Cal-QL's seed-0 run of that time).
    assert "calql__demo_pendulum-medium__s0__864f2ca4" in {c.key for c in suite.cells}


def test_labelled_ablation_and_eval_env_reach_reports_and_runs():
    suite = load_suite("sim-to-real-quick")
    assert suite.algos == ["h2o", "mixing", "iql"]
    mixing = [c for c in suite.cells if c.label == "mixing" and "pendulum" in c.task]
    assert len(mixing) == 5 and all(c.algo == "h2o" and "penalty_weight=0" in c.overrides for c in mixing)
    request = mixing[0].request()
    assert (request.algo, request.env_id, request.eval_env) == ("h2o", "Pendulum-v1", "heron/Pendulum-real-v0")
    h2o = next(c for c in suite.cells if c.label == "h2o")
    assert h2o.key.startswith("h2o__") and h2o.key != mixing[0].key


def test_suite_runs_skips_finished_cells_and_reports(tmp_path, capsys):
    toml = _write(tmp_path, TINY)
    suite = load_suite(toml)
    root = suite_dir(suite, tmp_path / "bench")
    assert main(["bench", "run", str(toml), "--root", str(tmp_path / "bench"), "--reps", "500"]) == 0
    runs = {c.key: cell_runs(root, c) for c in suite.cells}
    assert all(len(v) == 1 for v in runs.values()), runs
    # a second run finds every cell finished and trains nothing
    results = run_suite(suite, root, progress=False)
    assert {r.outcome for r in results} == {"skipped"}
    assert {c.key: cell_runs(root, c) for c in suite.cells} == runs

    scores = json.loads((root / "report" / "scores.json").read_text())
    for algo in ("ppo", "dqn"):
        finals = scores["final"][f"{algo}|CartPole-v1"]
        assert len(finals) == 2
        iqm, lo, hi = scores["aggregates"]["all tasks"]["aggregates"][algo]["IQM"]
        assert min(finals) - 1e-9 <= lo <= iqm <= hi <= max(finals) + 1e-9
        # the final score is the normalised mean return of the last evaluation
        run = cell_runs(root, next(c for c in suite.cells if c.algo == algo and c.seeds == (0,)))[0]
        last = [r for r in (run / "eval.csv").read_text().splitlines()[1:] if r.startswith("2048,")]
        mean = np.mean([float(r.split(",")[-1]) for r in last])
        assert finals[0] == pytest.approx(100 * (mean - 22.0) / 478.0)
    p = scores["aggregates"]["all tasks"]["probability_of_improvement"]["dqn,ppo"]
    assert 0.0 <= p[1] <= p[0] <= p[2] <= 1.0
    for name in ("report.md", "report.html", "aggregates.png", "performance_profile.png",
                 "probability_of_improvement.png", "curve_CartPole-v1.png"):
        assert (root / "report" / name).stat().st_size > 0, name
    # the same seed gives the same report numbers
    before = (root / "report" / "scores.json").read_bytes()
    write_report(suite, root, reps=500, seed=0)
    assert (root / "report" / "scores.json").read_bytes() == before


def _wait_for_checkpoint(run_parent: Path, proc, timeout=900.0) -> Path:
    # generous: on a loaded 2-core machine the workers' first compile alone took over 4 minutes
    """The first run directory under run_parent (searched recursively) with a checkpoint past step 0."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ckpt in run_parent.rglob("checkpoints/step_*"):
            if (ckpt / "manifest.json").exists():
                return ckpt.parent.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def _env():
    return {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"}


def test_killed_cell_resumes_from_its_checkpoint(tmp_path):
    """A suite process killed mid-cell: the next `heron bench run` resumes that run, does not restart it."""
    toml = _write(tmp_path, KILLABLE.replace("seeds = [0, 1]", "seeds = [0]"))
    suite = load_suite(toml)
    root = suite_dir(suite, tmp_path / "bench")
    cmd = [sys.executable, "-m", "heron.cli.main", "bench", "run", str(toml), "--root", str(tmp_path / "bench"),
           "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    run_dir = _wait_for_checkpoint(root / "runs", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_status(run_dir)["status"] == "killed"  # recorded running, by a process that is gone
    results = run_suite(suite, root, progress=False)
    assert [r.outcome for r in results] == ["resumed"], results
    status = read_status(run_dir)
    assert status["status"] == "finished" and status["resumed"] == 1
    assert status["resumes"][0]["from_step"] > 0
    assert cell_runs(root, suite.cells[0]) == [run_dir]


def test_ray_workers_killed_mid_run_are_retried_and_resume(tmp_path):
    """`heron bench run --workers 2`: SIGKILL the Ray worker training a cell after its first checkpoint;
    Ray retries the task, which resumes the run; the suite finishes with every cell's single run."""
    toml = _write(tmp_path, KILLABLE)
    suite = load_suite(toml)
    root = suite_dir(suite, tmp_path / "bench")
    cmd = [sys.executable, "-m", "heron.cli.main", "bench", "run", str(toml), "--root", str(tmp_path / "bench"),
           "--workers", "2", "--reps", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        run_dir = _wait_for_checkpoint(root / "runs", proc)
        worker_pid = read_status(run_dir)["pid"]
        assert worker_pid != proc.pid  # the run trains inside a Ray worker, not in the driver
        os.kill(worker_pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    status = read_status(run_dir)
    assert status["status"] == "finished", status
    assert status["resumed"] == 1 and status["resumes"][0]["from_step"] > 0, status
    for cell in suite.cells:
        (run,) = cell_runs(root, cell)
        assert read_status(run)["status"] == "finished"
    assert (root / "report" / "report.md").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat, the session id
            pids.append(int(stat.parent.name))
    return pids


def test_suite_runs_on_a_ray_cluster_given_its_address(tmp_path):
    """`heron bench run --ray-address`: a Ray head started on its own (`ray start --head`, as on a
    cluster's head node) runs the cells; the suite process only submits them and writes the report."""
    import secrets
    import shutil
    import tempfile

    port = _free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    # a cluster with Ray's token authentication, the token handed out as on a real cluster
    env = {**_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={ray_tmp}", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own session: the teardown stops this cluster only
    try:
        toml = _write(tmp_path, TINY.replace("seeds = 2", "seeds = 1").replace('"ppo", "dqn"', '"ppo"')
                                   .replace("2048", "1024").replace('overrides = { dqn = ["learning_starts=500"] }', ""))
        suite = load_suite(toml)
        root = suite_dir(suite, tmp_path / "bench")
        cmd = [sys.executable, "-m", "heron.cli.main", "bench", "run", str(toml), "--root", str(tmp_path / "bench"),
               "--ray-address", f"127.0.0.1:{port}", "--reps", "200"]
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to come up
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode == 0 or time.monotonic() > deadline or "could not connect" not in proc.stderr:
                break
            assert head.poll() is None, head.communicate()[1][-3000:]
            time.sleep(2)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run_dir,) = cell_runs(root, suite.cells[0])
        status = read_status(run_dir)
        assert status["status"] == "finished", status
        # the run trained in a worker of the head's cluster (the worker's log is in that cluster's
        # session), not in a Ray instance the suite process started
        assert list(ray_tmp.glob(f"session_*/logs/python-core-worker-*_{status['pid']}.log")), status["pid"]
        assert (root / "report" / "report.md").exists()
    finally:
        for pid in _session_processes(head.pid):
            os.kill(pid, signal.SIGKILL)
        head.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_ray_map_yields_results_and_reraises_a_task_error_as_itself():
    from heron.experiments.bench import slug
    from heron.experiments.scale import ray_map

    assert sorted(ray_map(slug, [("a/b c",), ("x",)], workers=1)) == ["a_b_c", "x"]
    with pytest.raises(TypeError, match="expected string"):
        list(ray_map(slug, [(None,)], workers=1))


def test_ray_dashboard_binds_to_loopback():
    import ray

    from heron.experiments.scale import init_ray

    try:
        ctx = init_ray(workers=1, dashboard=True)
        assert ctx.dashboard_url.split(":")[0] == "127.0.0.1", ctx.dashboard_url
    finally:
        ray.shutdown()


def test_report_shows_the_shipped_reference_results(tmp_path):
    """A suite named like a shipped one is reported next to that suite's reference results."""
    import dataclasses

    toml = _write(tmp_path, TINY.replace("seeds = 2", "seeds = 1").replace("2048", "1024"))
    suite = dataclasses.replace(load_suite(toml), name="online-classic")
    root = tmp_path / "bench"
    run_suite(suite, root, progress=False)
    report = write_report(suite, root, reps=200).read_text()
    reference = json.loads((Path(__file__).parents[1] / "src/heron/suites/online-classic.reference.json").read_text())
    ref_ppo = np.mean(reference["final"]["ppo|CartPole-v1"])
    line = next(row for row in report.splitlines() if row.startswith("| ppo | CartPole-v1 |"))
    assert line.rstrip(" |").endswith(f"{ref_ppo:.1f} ({len(reference['final']['ppo|CartPole-v1'])})"), line


def test_report_says_when_the_reference_learnt_from_other_data():
    """Datasets are built locally and differ across CPUs: the report compares the data file digests its runs
    recorded with the reference's."""
    from heron.experiments.bench_report import data_digest, reference_data_caveat

    config = {"dataset": {"sha256": {"data/main_data.hdf5": "aa", "data/metadata.json": "m", "heron.json": "h"}}}
    assert data_digest(config) == "aa" and data_digest({"dataset": {"sha256": {"file": "ff"}}}) == "ff"
    assert data_digest({"env": "CartPole-v1"}) is None
    ours = {"demo/pendulum-medium": "aa", "demo/pendulum-medium-replay": "bb"}
    assert reference_data_caveat({}, {"datasets": {}}) == []  # env tasks only: nothing to say
    same = "\n".join(reference_data_caveat(ours, {"datasets": dict(ours)}))
    assert "same data" in same
    other = "\n".join(reference_data_caveat(ours, {"datasets": {**ours, "demo/pendulum-medium-replay": "cc"}}))
    assert "learnt from other data** for demo/pendulum-medium-replay (" in other
    assert "does not record" in "\n".join(reference_data_caveat(ours, {"final": {}}))  # a reference made before
    partial = "\n".join(reference_data_caveat(ours, {"datasets": {"demo/pendulum-medium": "aa"}}))
    assert "same data" not in partial and "for demo/pendulum-medium-replay." in partial


def test_report_names_the_settings_in_which_the_reference_differs():
    """A default changed (or added) since the reference was made shows as the setting and both values."""
    from heron.experiments.bench_report import reference_settings_caveat

    ours = {"cql|demo/pendulum-medium": {"cql_alpha": 5.0, "weight_init": "torch"},
            "iql|demo/pendulum-medium": {"expectile": 0.7}}
    assert reference_settings_caveat({}, {"settings": {}}) == []
    assert "same agent settings" in "\n".join(reference_settings_caveat(ours, {"settings": dict(ours)}))
    older = {"cql|demo/pendulum-medium": {"cql_alpha": 10.0}, "iql|demo/pendulum-medium": {"expectile": 0.7}}
    text = "\n".join(reference_settings_caveat(ours, {"settings": older}))
    assert ("cql on demo/pendulum-medium: cql_alpha 5.0 (reference 10.0), weight_init 'torch' (the reference "
            "predates it)") in text and "iql on" not in text
    assert "does not record its runs' agent settings" in "\n".join(reference_settings_caveat(ours, {"final": {}}))


def test_bootstrap_intervals_are_reproducible_and_leave_numpys_global_generator_alone():
    from heron.experiments.bench_report import (
        aggregates,
        performance_profiles,
        probability_of_improvement,
    )

    rng = np.random.default_rng(0)
    m = {"a": rng.random((5, 3)), "b": rng.random((5, 3))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for f in (aggregates, probability_of_improvement, performance_profiles):
        assert pickle.dumps(f(m, 300, 0)) == pickle.dumps(f(m, 300, 0)), f.__name__  # bytes of equal arrays
    assert np.array_equal(np.random.get_state()[1], before)



def test_env_block_with_eval_env_is_scored_against_that_envs_references(tmp_path):
    toml = _write(tmp_path, """
name = "sim-only"
seeds = 1
[references."Pendulum-v1"]
random = -1200.0
expert = -150.0
[references."heron/Pendulum-real-v0"]
random = -1500.0
expert = -200.0
[[grid]]
algos = ["sac"]
envs = ["Pendulum-v1"]
eval_env = "heron/Pendulum-real-v0"
steps = 6000
""")
    suite = load_suite(toml)
    (cell,) = suite.cells
    assert cell.request().eval_env == "heron/Pendulum-real-v0" and cell.request().env_id == "Pendulum-v1"
    assert suite.references_for(cell) == (-1500.0, -200.0)
    plain = dataclasses.replace(cell, eval_env=None)
    assert suite.references_for(plain) == (-1200.0, -150.0) and plain.key != cell.key
