"""Run directories, the metrics store, status (incl. killed detection), exact resume, queries."""

import csv
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.errors import HeronError
from heron.tracking import query
from heron.tracking.run import Run, default_runs_root, read_status, resolve_run

CONFIG = {"algo": "sac", "env": "Pendulum-v1", "lr": 3e-4, "net": {"hidden": [64, 64]}}


def make_run(root, prefix="sac-pendulum", config=CONFIG, seed=0, **kw):
    return Run.create(root, prefix, config, ["heron", "train", "sac"], seed, **kw)


def rows(path: Path, drop_wall_time: bool = True) -> list[list[str]]:
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    if drop_wall_time and table and table[0][-1] == "wall_time":
        table = [r[:-1] for r in table]
    return table


# -- creation ------------------------------------------------------------------------------


def test_create_writes_config_provenance_status(tmp_path):
    run = make_run(tmp_path, prefix="sac pendulum/v1", seed=7, seeds=4)
    assert re.fullmatch(r"sac-pendulum-v1-\d{8}-\d{6}-[0-9a-f]{6}", run.name)
    assert run.path.parent == tmp_path
    for fname in ("config.json", "provenance.json", "status.json", "metrics.csv", "eval.csv"):
        assert (run.path / fname).is_file(), fname

    config = json.loads((run.path / "config.json").read_text())
    assert config["lr"] == 3e-4 and config["net"] == {"hidden": [64, 64]}
    assert config["seed"] == 7 and config["seeds"] == 4

    prov = json.loads((run.path / "provenance.json").read_text())
    assert prov["seed"] == 7
    assert prov["command"] == ["heron", "train", "sac"]
    assert prov["hostname"] == socket.gethostname()
    assert prov["packages"]["jax"] == jax.__version__
    assert set(prov["packages"]) >= {"jax", "jaxlib", "flax", "optax", "gymnasium", "numpy", "mujoco"}
    assert prov["python"] and prov["platform"] and prov["cpu"]
    assert prov["jax_devices"]  # jax is imported here, so devices are recorded
    assert prov["heron_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["heron_commit"])
    if prov["git"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", prov["git"]["commit"])
        assert isinstance(prov["git"]["dirty"], bool)

    status = read_status(run.path)
    assert status["status"] == "running"
    assert status["pid"] == os.getpid() and status["resumed"] == 0
    run.finish()
    assert read_status(run.path)["status"] == "finished"


def test_heron_source_commit_is_herons_checkout_whatever_the_working_directory(tmp_path, monkeypatch):
    """Reports record the code that made them: a user's own repository as working directory must not stand in."""
    import heron
    from heron.tracking.provenance import git_info, heron_source_commit

    source = Path(heron.__file__).resolve().parent
    ours = git_info(source)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    if ours is not None and (Path(ours["root"]) / "src" / "heron").resolve() == source:  # editable install (CI's)
        assert heron_source_commit() == ours["commit"]
    else:
        assert heron_source_commit() is None  # an installed copy, not a checkout


def test_root_defaults_to_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert default_runs_root() == tmp_path / "elsewhere"
    run = make_run(None)
    assert run.path.parent == tmp_path / "elsewhere"
    run.finish()
    monkeypatch.delenv("HERON_RUNS_DIR")
    assert default_runs_root() == Path("runs")


def test_unserialisable_config_leaves_no_directory(tmp_path):
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        make_run(tmp_path, config={"algo": "sac", "fn": object()})
    assert list(tmp_path.iterdir()) == []


def test_names_are_unique_within_one_second(tmp_path):
    runs = [make_run(tmp_path, prefix="x") for _ in range(20)]
    assert len({r.name for r in runs}) == 20
    for r in runs:
        r.finish()


def test_open_rejects_missing_file_and_non_run_dirs(tmp_path):
    with pytest.raises(HeronError, match="does not exist"):
        Run.open(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeronError, match="not a run directory"):
        Run.open(tmp_path / "file")
    with pytest.raises(HeronError, match=r"not a run directory \(no status.json\)"):
        Run.open(tmp_path)


def test_resolve_run_by_name_and_prefix(tmp_path):
    a = make_run(tmp_path, prefix="alpha")
    b = make_run(tmp_path, prefix="beta")
    assert resolve_run(a.name, tmp_path) == a.path
    assert resolve_run("bet", tmp_path) == b.path
    assert resolve_run(str(a.path)) == a.path
    make_run(tmp_path, prefix="alpha")
    with pytest.raises(HeronError, match="ambiguous"):
        resolve_run("alpha", tmp_path)
    with pytest.raises(HeronError, match="no run 'gamma'"):
        resolve_run("gamma", tmp_path)


# -- metrics -------------------------------------------------------------------------------


def test_log_writes_long_csv_with_per_seed_columns_and_tensorboard(tmp_path):
    run = make_run(tmp_path, seeds=3)
    run.log(10, {"loss": jnp.array([1.0, 2.0, 3.0]), "lr": 0.5, "q,with comma": np.float32(2.5)})
    run.log(20, {"loss": jnp.array([0.5, 0.5, 0.5]), "lr": 0.25, "q,with comma": float("nan")})
    run.log_eval(20, [[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]])
    run.log_eval(40, [2.0, 4.0])  # a flat list is one seed
    run.finish()

    m = rows(run.path / "metrics.csv")
    assert m[0] == ["step", "name", "value"]
    assert m[1:6] == [
        ["10", "loss", "2.0"],
        ["10", "loss/seed0", "1.0"],
        ["10", "loss/seed1", "2.0"],
        ["10", "loss/seed2", "3.0"],
        ["10", "lr", "0.5"],
    ]
    assert m[6] == ["10", "q,with comma", "2.5"]
    assert m[-1] == ["20", "q,with comma", "nan"]
    e = rows(run.path / "eval.csv")
    assert e[0] == ["step", "seed", "episode", "return"]
    assert e[1:4] == [["20", "0", "0", "1.0"], ["20", "0", "1", "3.0"], ["20", "1", "0", "5.0"]]
    assert e[-1] == ["40", "0", "1", "4.0"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run.path / "tb").iterdir())

    series = query.metric_series([run.path], "loss")[str(run.path.resolve())]
    assert series.seeds == [0, 1, 2]
    np.testing.assert_array_equal(series.steps, [10, 20])
    np.testing.assert_allclose(series.mean, [2.0, 0.5])
    lr = query.metric_series([run.path], "lr")[str(run.path.resolve())]
    assert lr.seeds is None and lr.values.shape == (2, 1)
    comma = query.metric_series([run.path], "q,with comma")[str(run.path.resolve())]
    assert comma.values[0, 0] == 2.5 and np.isnan(comma.values[1, 0])
    ev = query.metric_series([run.path], "eval/return")[str(run.path.resolve())]
    np.testing.assert_array_equal(ev.steps, [20, 40])
    assert ev.values[0].tolist() == [2.0, 6.0, 10.0]


def test_log_rejects_bad_shapes(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(ValueError, match="shape"):
        run.log(1, {"x": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="episode"):
        run.log_eval(1, [])
    run.finish()


def test_logs_are_flushed_on_every_call(tmp_path):
    run = make_run(tmp_path, fsync_every=3600)
    run.log(1, {"a": 1.0})
    run.log_eval(1, [1.0])
    # readable by another process before any fsync/close
    assert rows(run.path / "metrics.csv")[-1] == ["1", "a", "1.0"]
    assert rows(run.path / "eval.csv")[-1] == ["1", "0", "0", "1.0"]
    run.finish()


def test_inspection_handle_cannot_log(tmp_path):
    run = make_run(tmp_path)
    run.finish()
    opened = Run.open(run.path)
    with pytest.raises(RuntimeError, match="resume"):
        opened.log(1, {"a": 1.0})


# -- status --------------------------------------------------------------------------------


def test_context_manager_records_failure(tmp_path):
    with pytest.raises(ValueError):
        with make_run(tmp_path) as run:
            run.log(3, {"a": 1.0})
            raise ValueError("boom\nsecond line")
    status = read_status(run.path)
    assert status["status"] == "failed"
    assert status["error"] == "ValueError: boom"
    assert status["step"] == 3


def test_sigkill_leaves_running_which_reads_as_killed(tmp_path):
    code = (
        "import sys, time\n"
        "from heron.tracking.run import Run\n"
        f"run = Run.create({str(tmp_path)!r}, 'victim', {{'algo': 'ppo'}}, sys.argv, 0, tensorboard=False)\n"
        "run.log(5, {'a': 1.0})\n"
        "print(run.path, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        path = Path(proc.stdout.readline().strip())
        assert read_status(path)["status"] == "running"
        assert [r["status"] for r in query.runs_table(tmp_path)] == ["running"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    raw = json.loads((path / "status.json").read_text())
    assert raw["status"] == "running"  # nothing could update the file
    assert read_status(path)["status"] == "killed"
    (row,) = query.runs_table(tmp_path)
    assert row["status"] == "killed" and row["algo"] == "ppo"


def test_running_on_another_host_is_reported_as_running(tmp_path):
    run = make_run(tmp_path)
    run.close()
    status = json.loads((run.path / "status.json").read_text())
    status.update(hostname="some-other-host", pid=999_999_999)
    (run.path / "status.json").write_text(json.dumps(status))
    assert read_status(run.path)["status"] == "running"
    status.update(hostname=socket.gethostname())
    (run.path / "status.json").write_text(json.dumps(status))
    assert read_status(run.path)["status"] == "killed"


def test_resume_refuses_a_live_process(tmp_path):
    run = make_run(tmp_path)
    run.close()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        status = json.loads((run.path / "status.json").read_text())
        status.update(pid=sleeper.pid, pid_start_ticks=None)
        (run.path / "status.json").write_text(json.dumps(status))
        with pytest.raises(HeronError, match="still running"):
            Run.open(run.path).resume(None)
        Run.open(run.path).resume(None, force=True)
    finally:
        sleeper.kill()
        sleeper.wait()


# -- exact resume --------------------------------------------------------------------------


def _tb_events(tb_dir: Path) -> list:
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(tb_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        data = path.read_bytes()
        pos, file_events = 0, []
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[pos + 12 : pos + 12 + length])
            file_events.append(ev)
            pos += 12 + length + 4
        events.append(file_events)
    return events


def _train(run: Run, steps, checkpoint_at=(), crash_after=None):
    """A fake training loop: deterministic metrics, evals on even steps, checkpoints."""
    state = {"w": jnp.zeros(3), "key": jax.random.key(0)}
    for step in steps:
        run.log(step, {"loss": 1.0 / step, "per_seed": np.array([step, 2.0 * step])})
        if step % 2 == 0:
            run.log_eval(step, [[step, step + 1.0], [step + 2.0, step + 3.0]])
        if step in checkpoint_at:
            run.save_checkpoint(step, state, {"buf": np.arange(step)}, {"position": step})
        if step == crash_after:
            return state
    return state


@pytest.mark.parametrize("how", ["resume(checkpoint)", "rewind_logs(step)"])
def test_resume_rewinds_logs_to_equal_an_uninterrupted_run(tmp_path, how):
    reference = make_run(tmp_path / "a", seeds=2)
    _train(reference, range(1, 11), checkpoint_at={5})
    reference.finish()

    crashed = make_run(tmp_path / "b", seeds=2)
    _train(crashed, range(1, 11), checkpoint_at={5}, crash_after=8)
    crashed.close()  # the process dies here: status stays "running", logs run to step 8
    assert rows(crashed.path / "metrics.csv")[-1][0] == "8"

    resumed = Run.open(crashed.path)
    template = {"w": jnp.ones(3), "key": jax.random.key(1)}
    ckpt = resumed.load_latest_checkpoint(template)
    assert ckpt.step == 5 and ckpt.meta == {"position": 5}
    if how == "resume(checkpoint)":
        resumed.resume(ckpt)
    else:  # a driver that keeps only the step: the log lengths come from the checkpoint dir
        resumed.rewind_logs(ckpt.step)
    assert rows(crashed.path / "metrics.csv")[-1][0] == "5"
    assert rows(crashed.path / "eval.csv")[-1][0] == "4"
    _train(resumed, range(6, 11))
    resumed.finish()

    for fname in ("metrics.csv", "eval.csv"):
        assert rows(crashed.path / fname) == rows(reference.path / fname), fname
    status = read_status(crashed.path)
    assert status["status"] == "finished" and status["resumed"] == 1
    assert status["resumed_from_step"] == 5 and status["step"] == 10
    (resume,) = status["resumes"]
    assert resume["from_step"] == 5 and resume["pid"] == os.getpid()

    # TensorBoard: the resumed writer starts with a purge marker just after the checkpoint
    first, second = _tb_events(crashed.path / "tb")
    assert any(e.step == 8 for e in first if e.HasField("summary"))
    purge = [e for e in second if e.HasField("session_log")]
    assert purge and purge[0].step == 6
    assert min(e.step for e in second if e.HasField("summary")) == 6

    # runs table agrees with a direct look at the files
    table = {r["name"]: r for r in query.runs_table(tmp_path / "b")}
    assert table[crashed.name]["steps"] == 10 and table[crashed.name]["resumed"] == 1
    assert table[crashed.name]["last_eval_return"] == pytest.approx(11.5)


@pytest.mark.parametrize("target", [None, 0])
def test_resume_without_checkpoint_restarts_the_history(tmp_path, target):
    run = make_run(tmp_path)
    run.log(1, {"a": 1.0})
    run.log_eval(1, [1.0])
    run.close()
    again = Run.open(run.path)
    assert again.load_latest_checkpoint({"x": np.zeros(1)}) is None
    with pytest.raises(ValueError, match="no checkpoint of step 5"):
        again.rewind_logs(5)
    again.rewind_logs(target)
    assert read_status(run.path)["resumed"] == 1
    assert rows(run.path / "metrics.csv") == [["step", "name", "value"]]
    assert rows(run.path / "eval.csv") == [["step", "seed", "episode", "return"]]
    again.finish()


# -- queries -------------------------------------------------------------------------------


def test_runs_table_and_sql_views(tmp_path):
    a = make_run(tmp_path, prefix="a", config={"algo": "sac", "env": {"id": "Hopper-v5"}})
    a.log(100, {"loss": 1.0})
    a.log_eval(100, [10.0, 20.0])
    a.log_eval(200, [5.0, 7.0])
    a.finish()
    b = make_run(tmp_path, prefix="b", config={"algorithm": "ppo", "env_id": "CartPole-v1"}, seeds=2)
    b.log(50, {"loss": jnp.array([1.0, 3.0])})
    b.finish("failed", "RuntimeError: diverged")
    (tmp_path / "not-a-run").mkdir()

    table = query.runs_table(tmp_path)
    assert [r["name"] for r in table] == [a.name, b.name]
    ra, rb = table
    assert (ra["algo"], ra["env"], ra["status"], ra["steps"]) == ("sac", "Hopper-v5", "finished", 200)
    assert ra["last_eval_return"] == 6.0 and ra["best_eval_return"] == 15.0
    assert (rb["algo"], rb["env"], rb["status"], rb["seeds"]) == ("ppo", "CartPole-v1", "failed", 2)
    assert rb["last_eval_return"] is None and rb["error"] == "RuntimeError: diverged"

    # the summary cached at finish equals the live aggregation of eval.csv
    status = json.loads((a.path / "status.json").read_text())
    del status["eval"]
    (a.path / "status.json").write_text(json.dumps(status))
    assert query.runs_table(tmp_path)[0] == ra

    cols, out = query.sql(tmp_path, "SELECT run, name, value FROM metrics ORDER BY run, name")
    assert cols == ["run", "name", "value"]
    assert out == [(a.name, "loss", 1.0), (b.name, "loss", 2.0), (b.name, "loss/seed0", 1.0), (b.name, "loss/seed1", 3.0)]
    _, out = query.sql(tmp_path, "SELECT run, count(*) FROM evals GROUP BY run")
    assert out == [(a.name, 4)]
    _, out = query.sql(tmp_path, "SELECT name, status FROM runs WHERE status = 'failed'")
    assert out == [(b.name, "failed")]
    with pytest.raises(HeronError, match="SQL error.*the views are metrics"):
        query.sql(tmp_path, "SELECT nope FROM runs")


def test_runs_table_on_empty_and_missing_roots(tmp_path):
    assert query.runs_table(tmp_path) == []
    with pytest.raises(HeronError, match="does not exist"):
        query.runs_table(tmp_path / "missing")


def test_torn_last_line_and_damaged_json_do_not_break_queries(tmp_path):
    run = make_run(tmp_path)
    run.log(1, {"a": 1.0})
    run.log(2, {"a": 2.0})
    run.log_eval(2, [3.0])
    run.close()
    with open(run.path / "metrics.csv", "ab") as f:
        f.write(b"3,a,0.12")  # machine crash mid-line
    with open(run.path / "eval.csv", "ab") as f:
        f.write(b"4,0")
    other = make_run(tmp_path, prefix="damaged")
    other.finish()
    (other.path / "config.json").write_text('{"algo": "sa')
    series = query.metric_series([run.path], "a")[str(run.path.resolve())]
    assert series.steps.tolist() == [1, 2]
    table = {r["name"]: r for r in query.runs_table(tmp_path)}
    assert table[run.name]["last_eval_return"] == 3.0
    assert table[other.name]["algo"] is None and table[other.name]["status"] == "finished"


def test_metric_series_unknown_metric_lists_available(tmp_path):
    run = make_run(tmp_path)
    run.log(1, {"loss/actor": 1.0, "loss/critic": np.array([1.0, 2.0])})
    run.finish()
    with pytest.raises(HeronError, match=r"no metric 'loss'; available: loss/actor, loss/critic"):
        query.metric_series([run.path], "loss")
    assert query.available_metrics([run.path]) == {str(run.path.resolve()): ["loss/actor", "loss/critic"]}


def test_status_step_is_refreshed_periodically(tmp_path):
    run = make_run(tmp_path, fsync_every=0.0)
    run.log(123, {"a": 1.0})
    time.sleep(0.01)
    run.log(456, {"a": 1.0})
    assert json.loads((run.path / "status.json").read_text())["step"] == 456
    run.finish()


def test_eval_table(tmp_path):
    run = make_run(tmp_path, seeds=2)
    assert run.eval_table() == []
    run.log_eval(10, [[1.0, 2.0], [3.0, 4.0]])
    run.log_eval(20, [[5.0, 6.0], [7.0, 8.0]])
    assert run.eval_table() == [(10, [1.0, 2.0, 3.0, 4.0]), (20, [5.0, 6.0, 7.0, 8.0])]
    run.finish()
