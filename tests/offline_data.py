"""Small Pendulum-v1 datasets for the offline tests, made with heron's own APIs.

`rollout_episodes` runs whole 200-step episodes of a policy (an agent's `act`, or uniform random
actions) in the pure-JAX Pendulum, all in one compiled call; `mixed_dataset` trains SAC briefly
with the compiled online loop and mixes a few of its (stochastic) episodes with many random ones.
"""

from functools import partial

import jax
import numpy as np

from heron.agents import get_agent
from heron.data.dataset import EpisodeDataset, from_episodes
from heron.envs.jax_envs import make_jax_env
from heron.loops import online_jax

ENV_ID = "Pendulum-v1"


@partial(jax.jit, static_argnums=(0, 2, 3))
def _rollout(spec, agent, num_episodes: int, env, key):
    reset_key, key = jax.random.split(key)
    state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
    low, high = env.action_space.low, env.action_space.high

    def step(carry, k):
        state, obs = carry
        act_key, env_key = jax.random.split(k)
        if spec is None:
            action = jax.random.uniform(act_key, (num_episodes, *env.action_space.shape), minval=low, maxval=high)
        else:
            action = spec.act(agent, obs, act_key, False)
        state, next_obs, reward, terminated, truncated = jax.vmap(env.step)(
            jax.random.split(env_key, num_episodes), state, action)
        return (state, next_obs), (obs, action, reward, terminated, truncated, next_obs)

    _, out = jax.lax.scan(step, (state, obs), jax.random.split(key, env.max_episode_steps))
    return out


def rollout_episodes(spec, agent, num_episodes: int, key) -> list[dict]:
    """Minari-style episode dicts; `spec=None` acts uniformly at random. Pendulum never terminates,
    so every episode is the 200 steps of its time limit (the last one truncated)."""
    env = make_jax_env(ENV_ID)
    obs, action, reward, terminated, truncated, next_obs = (np.asarray(x) for x in _rollout(spec, agent, num_episodes, env, key))
    assert truncated[-1].all() and not truncated[:-1].any() and not terminated.any()
    return [dict(observations=np.concatenate([obs[:, b], next_obs[-1:, b]]), actions=action[:, b], rewards=reward[:, b],
                 terminations=terminated[:, b], truncations=truncated[:, b]) for b in range(num_episodes)]


def returns(episodes: list[dict]) -> np.ndarray:
    return np.array([float(np.sum(ep["rewards"])) for ep in episodes])


def random_dataset(num_episodes: int = 20, seed: int = 0) -> EpisodeDataset:
    """Uniform-random episodes only, with references (random mean, −150) so scores are defined."""
    env = make_jax_env(ENV_ID)
    episodes = rollout_episodes(None, None, num_episodes, jax.random.PRNGKey(seed))
    return from_episodes(episodes, env.observation_space, env.action_space, name="pendulum-random", env_id=ENV_ID,
                         ref_min_score=float(returns(episodes).mean()), ref_max_score=-150.0)


def mixed_dataset(sac_steps: int = 6000, good_episodes: int = 10, random_episodes: int = 40, seed: int = 0):
    """(dataset, info): `good_episodes` episodes of a briefly trained SAC policy (stochastic, as D4RL's
    behaviour policies) after `random_episodes` uniform-random ones — mostly low return. The dataset's
    references are the random and the SAC episodes' mean returns: 0 = random, 100 = the good behaviour."""
    spec = get_agent("sac")
    cfg = spec.config(learning_starts=1000, actor_hidden=(64, 64), critic_hidden=(64, 64))
    trained = online_jax.train(spec, cfg, ENV_ID, sac_steps, seeds=1, seed=seed)
    agent = jax.tree.map(lambda x: x[0], trained.loop_state.agent)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
    good = rollout_episodes(spec, agent, good_episodes, jax.random.fold_in(key, 0))
    bad = rollout_episodes(None, None, random_episodes, jax.random.fold_in(key, 1))
    env = make_jax_env(ENV_ID)
    ds = from_episodes(bad + good, env.observation_space, env.action_space, name="pendulum-mixed", env_id=ENV_ID,
                       ref_min_score=float(returns(bad).mean()), ref_max_score=float(returns(good).mean()))
    return ds, {"good_return": float(returns(good).mean()), "random_return": float(returns(bad).mean())}
