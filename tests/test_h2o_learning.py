"""H2O learns on a sim/real pair: acting in the simulator Pendulum-v1 (g = 10) with a small dataset
from the real system heron/Pendulum-real-v0 (g = 15), it scores on the real system well above SAC
trained to convergence in the simulator alone (whose policy does not transfer).

The real data: 10 stochastic episodes of SAC trained 10 000 steps on the real system (the pure-JAX
twin) plus 10 uniform-random episodes (4000 transitions). CPU-sized: 64x64 networks, 5000 simulator
steps at 2 updates per step after 500 warm-up steps."""

from pathlib import Path

import jax
import numpy as np
import pytest
from offline_data import _rollout, returns

from heron.agents import get_agent
from heron.cli.main import main
from heron.data.dataset import from_episodes
from heron.data.minari_io import save_dataset
from heron.envs.jax_envs import make_jax_env
from heron.envs.sim_real import pendulum_real_jax
from heron.loops import online_jax

pytestmark = pytest.mark.learning

SAC_CFG = {"learning_starts": 1000, "actor_hidden": (64, 64), "critic_hidden": (64, 64)}


def _episodes(env, spec, agent, n, key) -> list[dict]:
    obs, action, reward, terminated, truncated, next_obs = (np.asarray(x) for x in _rollout(spec, agent, n, env, key))
    return [{"observations": np.concatenate([obs[:, b], next_obs[-1:, b]]), "actions": action[:, b],
             "rewards": reward[:, b], "terminations": terminated[:, b], "truncations": truncated[:, b]} for b in range(n)]


def _sac(env, steps: int, seed: int = 0):
    spec = get_agent("sac")
    cfg = spec.config(**SAC_CFG)
    loop_state = online_jax.init_loop_seeds(seed, 1, spec, cfg, env, steps)
    loop_state, _ = online_jax.run_chunk(loop_state, steps // online_jax.steps_per_iteration(spec, cfg))
    return spec, jax.tree.map(lambda x: x[0], loop_state.agent)


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory):
    real = pendulum_real_jax()
    spec, agent = _sac(real, 10_000)
    key = jax.random.fold_in(jax.random.PRNGKey(0), 11)
    good = _episodes(real, spec, agent, 10, jax.random.fold_in(key, 0))
    bad = _episodes(real, None, None, 10, jax.random.fold_in(key, 1))
    ds = from_episodes(bad + good, real.observation_space, real.action_space, name="pendulum-real",
                       env_id="heron/Pendulum-real-v0")
    path = tmp_path_factory.mktemp("data") / "pendulum-real"
    save_dataset(ds, path)
    print(f"real data: behaviour {returns(good).mean():.0f}, random {returns(bad).mean():.0f}")
    return path


def test_h2o_beats_sac_trained_in_the_simulator_on_the_real_system(real_dataset, tmp_path, capsys):
    # The baseline: SAC trained in the simulator until it solves it, then deployed on the real system.
    sim, real = make_jax_env("Pendulum-v1"), pendulum_real_jax()
    spec, agent = _sac(sim, 8000)
    key = jax.random.PRNGKey(5)
    sac_in_sim = float(online_jax.evaluate(spec, agent, sim, key, 20).mean())
    sac_on_real = float(online_jax.evaluate(spec, agent, real, key, 20).mean())

    argv = ["train", "h2o", "--dataset", str(real_dataset), "--env", "Pendulum-v1", "--eval-env",
            "heron/Pendulum-real-v0", "--steps", "0", "--online-steps", "5000", "--warmup-steps", "500",
            "--updates-per-step", "2", "--eval-episodes", "10", "--no-progress", "--runs-dir", str(tmp_path),
            "actor_hidden=64,64", "critic_hidden=64,64", "discriminator_hidden=64,64"]
    assert main(argv) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    evals = [float(line.split(",")[2]) for line in (run_dir / "metrics.csv").read_text().splitlines()
             if ",eval/return," in line]  # on the real system
    h2o_on_real = float(np.mean(evals[-3:]))
    print(f"SAC in the simulator {sac_in_sim:.0f}, the same policy on the real system {sac_on_real:.0f}; "
          f"H2O on the real system (last 3 evaluations) {h2o_on_real:.0f}: {[round(e) for e in evals]}")
    assert sac_in_sim > -400.0  # the baseline solves its simulator: the gap is the dynamics, not the training
    assert h2o_on_real >= -900.0, evals
    assert h2o_on_real >= sac_on_real + 200.0, (h2o_on_real, sac_on_real)
