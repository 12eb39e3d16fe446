"""`heron runs list | show | compare | plot | sql`, through the parser and the handlers."""

import argparse
import json

import numpy as np
import pytest

from heron.cli.runs import add_runs_parser
from heron.errors import HeronError
from heron.tracking.run import Run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def heron(*argv, capsys=None):
    parser = argparse.ArgumentParser(prog="heron")
    sub = parser.add_subparsers(dest="command", required=True)
    add_runs_parser(sub)
    args = parser.parse_args(list(argv))
    rc = args.func(args)
    assert rc == 0
    return capsys.readouterr().out if capsys is not None else None


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    a = Run.create(root, "sac-pendulum", {"algo": "sac", "env": "Pendulum-v1", "lr": 3e-4, "tau": 0.005}, ["heron", "train"], 0)
    for step in range(100, 1100, 100):
        a.log(step, {"loss/critic": 1.0 / step, "alpha": 0.2})
        if step % 500 == 0:
            a.log_eval(step, [-1000.0 + step, -900.0 + step])
    a.finish()
    b = Run.create(root, "sac-pendulum-lr", {"algo": "sac", "env": "Pendulum-v1", "lr": 1e-3, "tau": 0.005}, ["heron", "train"], 1, seeds=3)
    for step in range(100, 1100, 100):
        b.log(step, {"loss/critic": np.array([1.0, 2.0, 3.0]) / step, "alpha": np.array([0.1, 0.2, 0.3])})
        if step % 500 == 0:
            b.log_eval(step, [[step - 800.0, step - 700.0], [step - 600.0, step - 500.0], [step - 400.0, step - 300.0]])
    b.save_checkpoint(1000, {"x": np.zeros(2)})
    b.finish()
    return root, a, b


def test_list(root, capsys):
    root, a, b = root
    out = heron("runs", "list", "--root", str(root), capsys=capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ALGO", "ENV", "STATUS", "STEPS", "SEEDS", "LAST", "EVAL", "STARTED"]
    assert lines[2].startswith(a.name) and lines[3].startswith(b.name)
    assert lines[2].split()[1:7] == ["sac", "Pendulum-v1", "finished", "1000", "1", "50.00"]
    assert lines[3].split()[4:7] == ["1000", "3", "450.00"]
    out = heron("runs", "list", "--root", str(root), "--status", "killed", capsys=capsys)
    assert out.startswith("no runs in")
    out = heron("runs", "list", "--root", str(root), "--last", "1", capsys=capsys)
    assert b.name in out and a.name not in out


def test_list_uses_env_var_root(root, capsys, monkeypatch):
    root, a, _ = root
    monkeypatch.setenv("HERON_RUNS_DIR", str(root))
    assert a.name in heron("runs", "list", capsys=capsys)


def test_show(root, capsys):
    root, a, b = root
    out = heron("runs", "show", b.name[:18], "--root", str(root), capsys=capsys)  # unique prefix
    assert f"run        {b.name}" in out
    assert "status     finished" in out
    assert "seeds      3" in out
    assert "evaluation last 450.00 ± 163.30 (across seeds) at step 1000; best 450.00 at step 1000" in out
    assert "loss/critic/seed2" in out
    assert "checkpoints step_000000001000 (latest)" in out
    assert "lr     0.001" in out
    out = heron("runs", "show", str(a.path), capsys=capsys)  # by path
    assert "(across episodes)" in out and "checkpoints (none)" in out


def test_compare(root, capsys):
    root, a, b = root
    out = heron("runs", "compare", a.name, b.name, "--root", str(root), capsys=capsys)
    assert "50.00 ± 50.00" in out and "450.00 ± 163.30" in out
    assert "50.00 @ 1000" in out and "450.00 @ 1000" in out
    diff = out.split("config differences")[1].split("provenance differences")[0]
    keys = [line.split()[0] for line in diff.strip().splitlines()[3:]]
    assert keys == ["lr", "seed", "seeds"]
    assert "0.0003" in diff and "0.001" in diff
    assert "provenance differences: none" in out


def test_plot_default_eval_return_and_metric(root, capsys, tmp_path):
    root, a, b = root
    out = heron("runs", "plot", a.name, b.name, "--root", str(root), capsys=capsys)
    assert out.strip() == "wrote eval-return.png"
    assert (tmp_path / "eval-return.png").read_bytes()[:8] == PNG_MAGIC
    target = tmp_path / "critic.png"
    heron("runs", "plot", b.name, "--root", str(root), "--metric", "loss/critic", "--out", str(target), capsys=capsys)
    assert target.read_bytes()[:8] == PNG_MAGIC


def test_sql(root, capsys):
    root, a, b = root
    out = heron("runs", "sql", "SELECT run, count(*) AS n FROM evals GROUP BY run ORDER BY run", "--root", str(root), capsys=capsys)
    assert out.splitlines()[2].split() == [a.name, "4"]
    assert out.splitlines()[3].split() == [b.name, "12"]
    assert out.strip().endswith("(2 rows)")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["runs", "show", "nope"], "no run 'nope'"),
        (["runs", "show", "{tmp}"], "is not a run directory"),
        (["runs", "show", "{tmp}/missing/dir"], "no run"),
        (["runs", "compare", "{a}", "{a}"], "given twice"),
        (["runs", "plot", "{a}", "--metric", "loss"], "no metric 'loss'; available: alpha, eval/return, loss/critic"),
        (["runs", "plot", "{a}", "--out", "{tmp}/no/such/dir/x.png"], "does not exist"),
        (["runs", "plot", "{a}", "--out", "{tmp}/x.jpg"], "must end in .png"),
        (["runs", "list", "--root", "{tmp}/missing"], "runs root .* does not exist"),
        (["runs", "sql", "SELEC 1"], "SQL error"),
    ],
)
def test_bad_input_is_a_one_line_heron_error(root, tmp_path, argv, message):
    root, a, _ = root
    argv = [x.format(tmp=tmp_path, a=a.name) for x in argv]
    if "--root" not in argv:
        argv += ["--root", str(root)]
    with pytest.raises(HeronError, match=message) as err:
        heron(*argv)
    assert "\n" not in str(err.value)


def test_damaged_status_is_a_heron_error(root):
    root, a, _ = root
    (a.path / "status.json").write_text('{"status": "runn')
    with pytest.raises(HeronError, match="status.json is not valid JSON"):
        heron("runs", "show", a.name, "--root", str(root))


def test_killed_run_is_listed_as_killed(root, capsys):
    root, a, _ = root
    status = json.loads((a.path / "status.json").read_text())
    status.update(status="running", pid=999_999_999, end_time=None)
    (a.path / "status.json").write_text(json.dumps(status))
    out = heron("runs", "list", "--root", str(root), capsys=capsys)
    assert out.splitlines()[2].split()[3] == "killed"
    out = heron("runs", "show", a.name, "--root", str(root), capsys=capsys)
    assert "killed (status says running, but pid 999999999 is gone)" in out
