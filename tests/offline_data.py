"""Small Pendulum-v1 datasets for the offline tests, made with heron's own APIs.

`rollout_episodes` runs whole 200-step episodes of a policy (an agent's `act`, or uniform random
actions) in the pure-JAX Pendulum, all in one compiled call; `mixed_dataset` mixes a few stochastic
episodes of a briefly trained SAC with many random ones (from a shipped file: see MIXED_FILE).
"""

from functools import partial
from pathlib import Path

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


MIXED_FILE = Path(__file__).with_name("data") / "pendulum-mixed.npz"
"""The mixed dataset's episodes, made once by `python tests/offline_data.py` and shipped: SAC's learning
curve rises steeply at these budgets, so float differences between CPUs changed what it had learnt after a
given number of steps (after 6000 steps a mediocre policy on an Intel Xeon, but on an AMD EPYC −1118, no
better than random), and the learning tests' thresholds with it; every machine now tests on the same data."""
SAC_STEPS = 6750
"""SAC's env steps for the good episodes: on the rise, a mediocre policy (mean return −560 on the AMD EPYC
that made the file, random −1262; its plateau, about −320, comes a few hundred steps later)."""
GOOD, RANDOM = 10, 45


def make_mixed_episodes(sac_steps: int = SAC_STEPS, seed: int = 0) -> dict[str, np.ndarray]:
    """GOOD stochastic episodes of SAC trained `sac_steps` env steps (64x64), then RANDOM uniform-random
    ones, as arrays [episode, step, ...] (every Pendulum episode is 200 steps)."""
    spec = get_agent("sac")
    cfg = spec.config(learning_starts=1000, actor_hidden=(64, 64), critic_hidden=(64, 64))
    trained = online_jax.train(spec, cfg, ENV_ID, sac_steps, seeds=1, seed=seed)
    agent = jax.tree.map(lambda x: x[0], trained.loop_state.agent)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
    episodes = (rollout_episodes(spec, agent, GOOD, jax.random.fold_in(key, 0))
                + rollout_episodes(None, None, RANDOM, jax.random.fold_in(key, 1)))
    return {k: np.stack([ep[k] for ep in episodes]) for k in episodes[0]} | {"sac_steps": np.array(sac_steps)}


def mixed_dataset(good_episodes: int = 10, random_episodes: int = 40):
    """(dataset, info): the first `random_episodes` uniform-random episodes, then the first `good_episodes`
    episodes of a briefly trained SAC policy (stochastic, as D4RL's behaviour policies) — mostly low return.
    The dataset's references are the random and the SAC episodes' mean returns: 0 = random, 100 = the good
    behaviour. The episodes come from MIXED_FILE (see there why)."""
    if not (0 < good_episodes <= GOOD and 0 < random_episodes <= RANDOM):
        raise ValueError(f"the shipped file holds {GOOD} good and {RANDOM} random episodes")
    with np.load(MIXED_FILE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    episodes = [{k: v[i] for k, v in arrays.items() if k != "sac_steps"} for i in range(GOOD + RANDOM)]
    good, bad = episodes[:good_episodes], episodes[GOOD:GOOD + random_episodes]
    env = make_jax_env(ENV_ID)
    ds = from_episodes(bad + good, env.observation_space, env.action_space, name="pendulum-mixed", env_id=ENV_ID,
                       ref_min_score=float(returns(bad).mean()), ref_max_score=float(returns(good).mean()))
    return ds, {"good_return": float(returns(good).mean()), "random_return": float(returns(bad).mean()),
                "sac_steps": int(arrays["sac_steps"])}


if __name__ == "__main__":
    MIXED_FILE.parent.mkdir(exist_ok=True)
    tmp = MIXED_FILE.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **make_mixed_episodes())
    tmp.replace(MIXED_FILE)
    print(MIXED_FILE, mixed_dataset()[1])
