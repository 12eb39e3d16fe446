"""The `heron` command: one-line errors, an end-to-end run, and exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from heron.cli.main import main

HERON = [sys.executable, "-m", "heron.cli.main"]


@pytest.mark.parametrize("argv, message", [
    (["train", "sacc", "--env", "Pendulum-v1"], "unknown algorithm 'sacc': did you mean 'sac'?"),
    (["train", "sac", "--env", "Pendulumm-v1"], "unknown environment 'Pendulumm-v1': did you mean"),
    (["train", "sac", "--env", "CartPole-v1"], "sac cannot handle the discrete action space of CartPole-v1"),
    (["train", "dqn", "--env", "Pendulum-v1"], "dqn cannot handle the continuous action space of Pendulum-v1"),
    (["train", "sac", "--env", "Pendulum-v1", "gama=0.9"], "unknown sac config field 'gama': did you mean gamma?"),
    (["train", "sac", "--env", "Pendulum-v1", "batch_size=big"], "bad value 'big' for batch_size"),
    (["train", "sac", "--env", "Pendulum-v1", "--lr", "3"], "unknown option --lr"),
    # SAC starts learning after 5000 env steps: a 1000-step run would be its random initial policy
    (["train", "sac", "--env", "Pendulum-v1", "--steps", "1000"], "raise --steps above 5000"),
    (["train", "sac", "--env", "Pendulum-v1", "--steps", "x"], "argument --steps: invalid int value"),
    (["train", "sac", "--env", "HalfCheetah-v5", "--seeds", "2"], "--seeds 2 trains seeds together by vmap"),
    (["train", "--resume", "no/such/run"], "no/such/run"),
    (["eval", "no/such/run"], "no/such/run"),
    (["runs", "show", "no/such/run"], "no/such/run"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("heron: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed command must not leave a run directory behind"


def test_a_reader_that_leaves_the_pipe_ends_the_command_quietly(monkeypatch, capsys):
    """`heron bench list | head -1`: no traceback when head exits before heron has written everything."""
    class LeftPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", LeftPipe())
    assert main(["bench", "list"]) == 141
    assert capsys.readouterr().err == ""


def test_help_lists_hyperparameters_with_docs(capsys):
    assert main(["train", "sac", "--help"]) == 0
    out = capsys.readouterr().out
    assert "gamma=0.99" in out and "Discount" in out


def _final_params(run_dir: Path):
    from heron.experiments.train import HostLoop, HostLoopConfig, load_host_checkpoint, load_request
    from heron.tracking.run import Run

    run = Run.open(run_dir)
    req, spec, cfg = load_request(run)
    loop = HostLoop(spec, cfg, HostLoopConfig(env_id=req.env_id, total_steps=req.steps, eval_episodes=0))
    step, tree, meta = load_host_checkpoint(run, loop.template())
    loop.close()
    return step, tree, meta


def _metric_rows(run_dir: Path):
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    return [line for line in lines if ",time/" not in line.replace("\"", "")]


def _strip_wall_time(rows):
    # long format: step,name,value,wall_time -> drop wall_time
    return [",".join(r.split(",")[:3]) for r in rows]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    env = dict(os.environ, HERON_RUNS_DIR=str(tmp_path / "runs"))
    args = ["train", "sac", "--env", "Pendulum-v1", "--loop", "host", "--steps", "1600", "--checkpoint-every", "400",
            "--eval-every", "800", "--eval-episodes", "2", "--log-every", "200", "--no-progress",
            "learning_starts=200", "batch_size=32", "actor_hidden=32,32", "critic_hidden=32,32"]

    full = subprocess.run(HERON + args, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    full_dir = Path(full.stdout.strip().splitlines()[-1])

    proc = subprocess.Popen(HERON + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs"
    deadline = time.time() + 300
    killed_dir = None
    while time.time() < deadline:
        candidates = [d for d in runs.iterdir() if d != full_dir and (d / "checkpoints").exists()
                      and any(p.name.startswith("step_000000000800") for p in (d / "checkpoints").iterdir())]
        if candidates:
            killed_dir = candidates[0]
            break
        time.sleep(0.05)
    assert killed_dir is not None, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    listing = subprocess.run(HERON + ["runs", "list"], env=env, capture_output=True, text=True)
    assert "killed" in listing.stdout, listing.stdout + listing.stderr

    resumed = subprocess.run(HERON + ["train", "--resume", str(killed_dir), "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr

    step_a, tree_a, meta_a = _final_params(full_dir)
    step_b, tree_b, meta_b = _final_params(killed_dir)
    assert step_a == step_b == 1600 and meta_a == meta_b
    leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _strip_wall_time(_metric_rows(full_dir)) == _strip_wall_time(_metric_rows(killed_dir))
    evals = (full_dir / "eval.csv").read_text().splitlines()
    assert len(evals) == 1 + 2 * 2  # header + 2 evaluations (steps 800, 1600) x 2 episodes
    assert evals == (killed_dir / "eval.csv").read_text().splitlines()


def test_eval_in_another_env_with_the_runs_spaces(tmp_path, capsys):
    """A policy trained in the simulator, deployed on its "real" system: `heron eval --env`."""
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "400", "--seeds", "2", "--eval-episodes", "1",
                 "--no-progress", "--runs-dir", str(tmp_path), "learning_starts=200", "actor_hidden=8",
                 "critic_hidden=8"]) == 0
    run_dir = capsys.readouterr().out.strip().splitlines()[-1]
    returns = {}
    for env in (None, "Pendulum-v1", "heron/Pendulum-real-v0"):
        assert main(["eval", run_dir, "--episodes", "3", *(["--env", env] if env else [])]) == 0
        out = capsys.readouterr().out
        assert "over 6 episodes" in out, out  # both seeds, 3 episodes each
        returns[env] = float(out.split("mean return ")[1].split()[0])
    assert returns["Pendulum-v1"] == returns[None]  # its own env named: the same evaluation
    assert returns["heron/Pendulum-real-v0"] != returns["Pendulum-v1"]
    assert main(["eval", run_dir, "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--env CartPole-v1 does not fit" in err and "evaluated in Pendulum-v1" in err and "\n" not in err, err


def test_train_eval_and_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HERON_RUNS_DIR", str(tmp_path))
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "4096", "--seeds", "2", "--eval-episodes", "3",
                 "--no-progress"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run_dir / "report.md").exists() and (run_dir / "eval_curve.png").exists()
    evals = [line.split(",") for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    assert sorted({(seed, episode) for _, seed, episode, _ in evals}) == [(s, e) for s in "01" for e in "012"]
    assert main(["eval", str(run_dir), "--episodes", "4"]) == 0
    assert "over 8 episodes" in capsys.readouterr().out
    assert main(["runs", "list"]) == 0
    assert "finished" in capsys.readouterr().out

    # Resuming a run that another live process still writes is refused, and leaves its status alone.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = json.loads((run_dir / "status.json").read_text())
        status.update(status="running", pid=sleeper.pid, pid_start_ticks=None)
        (run_dir / "status.json").write_text(json.dumps(status))
        assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
        assert "is still running" in capsys.readouterr().err
        assert json.loads((run_dir / "status.json").read_text()) == status
    finally:
        sleeper.kill()
        sleeper.wait()


def test_runs_commands_do_not_load_jax_and_jax_dispatches_synchronously(tmp_path):
    env = dict(os.environ, HERON_RUNS_DIR=str(tmp_path))
    # `heron runs` needs no JAX, and loading it is most of a cold command's time
    code = "import sys; from heron.cli.main import main; main(['runs', 'list']); assert 'jax' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # whenever JAX is imported, before or after heron, heron's synchronous CPU dispatch is set
    for order in ("import heron, jax", "import jax, heron", "import heron; from flax import linen"):
        code = f"{order}; from jax._src import xla_bridge as xb; print(xb._CPU_ENABLE_ASYNC_DISPATCH.value)"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "False", (order, out.stderr)
