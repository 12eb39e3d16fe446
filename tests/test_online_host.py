"""Host loop: exact episode boundaries and truncation bootstrapping, on a counting env."""

from dataclasses import dataclass

import flax.struct
import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents.registry import AgentSpec
from heron.loops.online_host import HostLoop, HostLoopConfig


class CountingEnv(gym.Env):
    """obs = [episode_id, t]; terminates when t == 7 if the episode id is odd, else truncates at 5."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode = int(self.np_random.integers(0, 1000))
        self.t = 0
        return np.array([self.episode, self.t], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.episode, self.t], np.float32)
        terminated = self.episode % 2 == 1 and self.t == 7
        return obs, 1.0, terminated, False, {}


gym.register("heron-test/Counting-v0", entry_point=CountingEnv, max_episode_steps=5)
gym.register("heron-test/CountingLong-v0", entry_point=CountingEnv, max_episode_steps=10)


@dataclass(frozen=True)
class NullConfig:
    num_envs: int = 3
    buffer_size: int = 1000
    batch_size: int = 4
    learning_starts: int = 0
    train_frequency: int = 1
    gradient_steps: int = 1


@flax.struct.dataclass
class NullState:
    updates: jnp.ndarray


def _spec():
    def init(key, obs_space, act_space, cfg):
        return NullState(jnp.zeros((), jnp.int32))

    def update(state, batch, key, cfg):
        return NullState(state.updates + 1), {"loss": jnp.float32(0)}

    def act(state, obs, key, deterministic=False):
        return jnp.zeros((obs.shape[0], 1), jnp.float32)

    return AgentSpec("null", NullConfig, init, update, act, "off_policy", frozenset({"continuous"}), "test agent")


@pytest.mark.parametrize("env_id", ["heron-test/Counting-v0", "heron-test/CountingLong-v0"])
def test_transitions_never_cross_episodes_and_keep_true_final_obs(env_id):
    loop = HostLoop(_spec(), NullConfig(), HostLoopConfig(env_id=env_id, total_steps=300, eval_episodes=0))
    final = loop.run(loop.init())
    loop.close()
    buffer = final["tree"]["buffer"]
    size = int(buffer.size)
    obs, next_obs = np.asarray(buffer.data.obs)[:size], np.asarray(buffer.data.next_obs)[:size]
    term, trunc = np.asarray(buffer.data.terminated)[:size], np.asarray(buffer.data.truncated)[:size]
    assert size == 300
    # Same episode, one step later: never the reset observation of the next episode.
    np.testing.assert_array_equal(next_obs[:, 0], obs[:, 0])
    np.testing.assert_array_equal(next_obs[:, 1], obs[:, 1] + 1)
    odd = obs[:, 0] % 2 == 1
    if env_id.endswith("Long-v0"):
        # odd episodes terminate at t=7; even ones are truncated at the 10-step limit
        assert np.all(term[odd & (next_obs[:, 1] == 7)] == 1) and np.all(term[~(odd & (next_obs[:, 1] == 7))] == 0)
        assert np.all(trunc[~odd & (next_obs[:, 1] == 10)] == 1)
    else:
        # every episode is truncated at 5 steps, with the true final obs t=5 and no termination
        assert term.sum() == 0
        np.testing.assert_array_equal(trunc == 1, next_obs[:, 1] == 5)
    assert int(final["tree"]["agent"].updates) == 100


def test_unsupported_action_space_is_one_clear_error():
    from heron.errors import HeronError

    with pytest.raises(HeronError, match="cannot handle the discrete action space of CartPole-v1"):
        HostLoop(_spec(), NullConfig(), HostLoopConfig(env_id="CartPole-v1", total_steps=10))
