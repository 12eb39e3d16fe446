"""RIQL's Huber loss and ensemble quantile, RCSL's return-to-go relabelling and the loop's
`relabel` hook, against hand-computed values."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import get_agent, rcsl, riql
from heron.agents.registry import DatasetStats
from heron.data.dataset import from_episodes
from heron.errors import HeronError
from heron.types import Transition

f32 = lambda *x: jnp.asarray(x, jnp.float32)


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- RIQL


def test_huber_loss_is_quadratic_inside_delta_and_linear_outside():
    # δ = 2: u = 1 -> 1/(2·2) = 0.25; u = -2 -> 4/4 = 1 (boundary, both pieces agree);
    # u = 3 -> 3 − 1 = 2; u = -10 -> 10 − 1 = 9.
    close(riql.huber_loss(f32(1.0, -2.0, 3.0, -10.0), 2.0), [0.25, 1.0, 2.0, 9.0])
    # δ = 1 (the authors' default): u = 0.5 -> 0.125, u = 4 -> 3.5.
    close(riql.huber_loss(f32(0.5, 4.0), 1.0), [0.125, 3.5])


def test_huber_gradient_is_bounded_by_one():
    # The point of the Huber loss: an outlying target pulls with slope ±1, not 2u.
    g = jax.grad(lambda u: jnp.sum(riql.huber_loss(u, 1.0)))(f32(0.3, 50.0, -1e4))
    close(g, [0.3, 1.0, -1.0])


def test_riql_critic_loss_averages_over_critics_and_batch():
    q = f32([0.0, 0.0], [1.0, 4.0])  # [K=2, B=2]
    y = f32(0.5, 1.0)
    # errors y − q: [[0.5, 1.0], [-0.5, -3.0]]; δ = 1 -> [[0.125, 0.5], [0.125, 2.5]]; mean 0.8125.
    close(riql.riql_critic_loss(q, y, 1.0), 0.8125)


def test_ensemble_quantile_interpolates_linearly_over_critics():
    # K = 5 values of one (s, a), sorted: 1, 2, 3, 4, 10; α = 0.25 -> position 0.25·4 = 1 -> 2;
    # α = 0.1 -> position 0.4 -> 1 + 0.4·(2 − 1) = 1.4; α = 0.5 -> 3 (the outlier 10 does not matter);
    # α = 0 is the minimum (IQL's min over critics).
    q = f32([4.0, 7.0], [1.0, 7.0], [10.0, 7.0], [2.0, 7.0], [3.0, 7.0])  # [K=5, B=2]
    close(riql.ensemble_quantile(q, 0.25), [2.0, 7.0])
    close(riql.ensemble_quantile(q, 0.1), [1.4, 7.0], tol=1e-5)
    close(riql.ensemble_quantile(q, 0.5), [3.0, 7.0])
    close(riql.ensemble_quantile(q, 0.0), jnp.min(q, axis=0))


def test_riql_defaults_are_the_authors():
    cfg = riql.Config()
    assert (cfg.num_critics, cfg.quantile, cfg.huber_delta, cfg.beta, cfg.expectile) == (5, 0.25, 1.0, 3.0, 0.7)
    assert cfg.normalize_obs and not cfg.normalize_reward and cfg.policy == "deterministic"
    with pytest.raises(HeronError, match="quantile"):
        riql.Config(quantile=1.5)
    with pytest.raises(HeronError, match="huber_delta"):
        riql.Config(huber_delta=0.0)


def test_riql_state_normalises_and_critic_uses_huber():
    # act takes raw observations: the dataset's mean/std (+ eps) live in the state.
    obs_space, act_space = gym.spaces.Box(-10, 10, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    stats = DatasetStats(np.array([1.0, -2.0], np.float32), np.array([2.0, 0.5], np.float32), -1.0, 1.0)
    cfg = riql.Config(actor_hidden=(8,), critic_hidden=(8,), value_hidden=(8,), batch_size=4, obs_std_eps=0.0)
    state = riql.init(jax.random.PRNGKey(0), obs_space, act_space, cfg, dataset_stats=stats)
    close(state.obs_mean, [1.0, -2.0])
    close(state.obs_std, [2.0, 0.5])
    close(state.reward_scale, 1.0)  # RIQL does not rescale rewards
    assert state.critic.num == 5
    # A huge reward moves the critic loss linearly (Huber), not quadratically.
    batch = Transition(obs=jnp.zeros((4, 2)), action=jnp.zeros((4, 1)), reward=f32(0, 0, 0, 1e4),
                       next_obs=jnp.zeros((4, 2)), terminated=jnp.ones((4,)), truncated=jnp.zeros((4,)))
    _, metrics = riql.update(state, batch, jax.random.PRNGKey(1), cfg)
    assert 2400.0 < float(metrics["critic_loss"]) < 2600.0  # ≈ (1e4 − 0.5) / 4, vs ~2.5e7 for MSE


# --------------------------------------------------------------------------- RCSL


def test_return_to_go_and_average_per_episode():
    rewards = np.array([1.0, 2.0, 3.0, -4.0, 10.0])
    starts = np.array([0, 3, 5])  # episodes [1, 2, 3] and [-4, 10]
    close(rcsl.return_to_go(rewards, starts), [6.0, 5.0, 3.0, 6.0, 10.0])
    # ω_t = G_t / (T − t): 6/3, 5/2, 3/1 | 6/2, 10/1.
    close(rcsl.average_reward_to_go(rewards, starts), [2.0, 2.5, 3.0, 3.0, 10.0])


def test_relabel_writes_average_reward_to_go_and_the_loop_uses_it():
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    eps = [{"observations": np.zeros((T + 1, 1)), "actions": np.zeros((T, 1)), "rewards": np.asarray(r, np.float32),
                "terminations": np.zeros(T, bool), "truncations": np.eye(T, dtype=bool)[-1]}
           for T, r in ((2, [-1.0, -3.0]), (1, [5.0]))]
    ds = from_episodes(eps, space, space)
    out = rcsl.relabel(ds)
    close(out.rewards, [-2.0, -3.0, 5.0])
    close(ds.rewards, [-1.0, -3.0, 5.0])  # the original is untouched
    spec = get_agent("rcsl")
    assert spec.relabel is rcsl.relabel
    assert get_agent("iql").relabel is None and get_agent("riql").relabel is None  # default: no relabelling


def test_rcsl_target_defaults_to_the_best_average_reward_and_conditions_act():
    obs_space, act_space = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)
    stats = DatasetStats(np.zeros(2, np.float32), np.ones(2, np.float32), -1200.0, -600.0)
    cfg = rcsl.Config(actor_hidden=(8,), max_episode_steps=200, batch_size=4)
    state = rcsl.init(jax.random.PRNGKey(0), obs_space, act_space, cfg, dataset_stats=stats)
    close(state.target_reward, -3.0)  # -600 / 200
    explicit = rcsl.init(jax.random.PRNGKey(0), obs_space, act_space, rcsl.Config(actor_hidden=(8,), target_reward=1.5),
                         dataset_stats=stats)
    close(explicit.target_reward, 1.5)
    # The conditioning input matters: act with ω* differs from act with another ω*.
    obs = jnp.ones((3, 2))
    a1 = rcsl.act(state, obs, jax.random.PRNGKey(0), True)
    a2 = rcsl.act(state.replace(target_reward=jnp.float32(50.0)), obs, jax.random.PRNGKey(0), True)
    assert a1.shape == (3, 1) and not np.allclose(a1, a2)


def test_rcsl_update_regresses_action_given_return():
    # Two "episodes" at the same state: ω = +1 took action +1, ω = -1 took -1. After fitting,
    # π(s, ω) must recover the action from ω alone (plain BC would average to 0).
    obs_space, act_space = gym.spaces.Box(-1, 1, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    cfg = rcsl.Config(actor_hidden=(32,), batch_size=2, normalize_obs=False)
    state = rcsl.init(jax.random.PRNGKey(0), obs_space, act_space, cfg)
    batch = Transition(obs=jnp.zeros((2, 1)), action=f32([0.8], [-0.8]), reward=f32(1.0, -1.0),
                       next_obs=jnp.zeros((2, 1)), terminated=jnp.zeros(2), truncated=jnp.zeros(2))
    step = jax.jit(lambda s: rcsl.update(s, batch, jax.random.PRNGKey(0), cfg))
    for _ in range(300):
        state, metrics = step(state)
    assert float(metrics["actor_loss"]) < 1e-3
    for omega, want in ((1.0, 0.8), (-1.0, -0.8)):
        a = rcsl.act(state.replace(target_reward=jnp.float32(omega)), jnp.zeros((1, 1)), jax.random.PRNGKey(0), True)
        close(a, [[want]], tol=0.05)
