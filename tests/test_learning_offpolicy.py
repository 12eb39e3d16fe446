"""Off-policy agents learn: SAC and TD3 on Pendulum-v1, DQN on CartPole-v1 (compiled loop,
several seeds in one vmapped program), and SAC through the host Gymnasium loop."""

import numpy as np
import pytest

from heron.agents import get_agent
from heron.loops.online_jax import train

pytestmark = pytest.mark.learning


def _eval_returns(algo, env_id, steps, seeds, **overrides):
    spec = get_agent(algo)
    cfg = spec.config(**overrides)
    result = train(spec, cfg, env_id, steps, seeds=seeds, seed=0, eval_episodes=10)
    return result.eval_returns.mean(axis=1)  # [seeds]


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_continuous_control_solves_pendulum(algo):
    per_seed = _eval_returns(algo, "Pendulum-v1", 15_000, seeds=2, learning_starts=1_000)
    assert np.all(per_seed >= -200), per_seed


def test_dqn_solves_cartpole():
    per_seed = _eval_returns("dqn", "CartPole-v1", 500_000, seeds=2, total_timesteps=500_000)
    assert np.all(per_seed >= 475), per_seed
