"""BC, TD3+BC and IQL losses, and the offline statistics, against hand-computed values."""

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import bc, iql, td3bc
from heron.agents.registry import DatasetStats
from heron.core.normalization import dataset_obs_normalizer, return_range_reward_scale
from heron.data.dataset import from_episodes
from heron.errors import HeronError
from heron.loops.offline import dataset_stats
from heron.types import Transition

f32 = lambda *x: jnp.asarray(x, jnp.float32)  # noqa: E731
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # 0.918939


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- IQL


def test_expectile_loss_weights_positive_errors_by_tau():
    # u = (2, -1, 0.5, -2), τ = 0.7: weights (.7, .3, .7, .3) * u² (4, 1, .25, 4) = (2.8, .3, .175, 1.2); mean 1.11875
    u = f32(2.0, -1.0, 0.5, -2.0)
    close(iql.expectile_loss(u, 0.7), 1.11875)
    close(iql.expectile_loss(u, 0.5), 0.5 * (4 + 1 + 0.25 + 4) / 4)  # τ = ½: half the mean squared error


def test_expectile_minimiser_is_the_expectile():
    # samples {0, 1}, τ = 0.9: the 0.9-expectile solves 0.9 (1 − v) = 0.1 v, v = 0.9 — above the mean 0.5
    q = f32(0.0, 1.0)
    grad = lambda v: jax.grad(lambda v: iql.expectile_loss(q - v, 0.9))(jnp.float32(v))  # noqa: E731
    close(grad(0.9), 0.0)
    assert grad(0.5) < 0 < grad(0.95)  # descent moves v from the mean up to 0.9, not beyond


def test_awr_weights_exponentiate_and_clip_without_gradient():
    adv = f32(0.0, 1.0, 2.0, -1.0)
    # exp(3·A) = (1, 20.0855, 403.43 -> clipped 100, 0.049787)
    close(iql.awr_weights(adv, 3.0, 100.0), [1.0, math.exp(3.0), 100.0, math.exp(-3.0)], tol=1e-5)
    close(jax.grad(lambda a: jnp.sum(iql.awr_weights(a, 3.0, 100.0)))(adv), [0.0] * 4)
    assert np.isfinite(iql.awr_weights(f32(1e4), 3.0, 100.0)).all()  # exp overflow clips to 100, no NaN


def test_awr_actor_losses():
    # −mean(w log π) with w = (1, 2), log π = (−1, −0.5): −mean(−1, −1) = 1
    close(iql.awr_actor_loss(f32(1.0, 2.0), f32(-1.0, -0.5)), 1.0)
    # mean(w Σ_j (π − a)²): errors² summed per sample (1, 2) weighted (1, 4) -> mean 2.5
    pred, action = jnp.array([[0.0, 0.0], [1.0, 1.0]]), jnp.array([[1.0, 0.0], [0.0, 0.0]])
    close(iql.weighted_mse_actor_loss(f32(1.0, 2.0), pred, action), 2.5)


def test_iql_q_target_and_critic_loss():
    # y = r + γ (1 − d) V(s'): (1 + 0.9·10, 2 + 0) = (10, 2)
    y = iql.iql_q_target(f32(1.0, 2.0), f32(0.0, 1.0), f32(10.0, 10.0), 0.9)
    close(y, [10.0, 2.0])
    # Σ_i mean (Q_i − y)²: member 0 errors (0, 1) -> 0.5, member 1 errors (2, 3) -> 6.5; total 7
    close(iql.critic_loss(jnp.array([[10.0, 3.0], [12.0, 5.0]]), y), 7.0)
    close(jax.grad(lambda t: iql.critic_loss(jnp.ones((2, 2)), t))(f32(0.0, 0.0)), [0.0, 0.0])


def test_iql_update_value_and_target_steps():
    """One update: V moves toward the target critics' min (expectile step), targets are Polyak-averaged."""
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)
    cfg = iql.Config(batch_size=8, actor_hidden=(8,), critic_hidden=(8,), value_hidden=(8,), tau=0.5)
    state = iql.init(jax.random.key(0), obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    batch = Transition(obs=rng.uniform(-1, 1, (8, 3)).astype(np.float32), action=rng.uniform(-2, 2, (8, 1)).astype(np.float32),
                           reward=rng.normal(size=8).astype(np.float32), next_obs=rng.uniform(-1, 1, (8, 3)).astype(np.float32),
                           terminated=np.zeros(8, np.float32), truncated=np.zeros(8, np.float32))
    new, metrics = iql.update(state, batch, jax.random.key(1), cfg)
    expected_target = jax.tree.map(lambda t, o: 0.5 * o + 0.5 * t, state.target_critic_params, new.critic_params)
    for a, b in zip(jax.tree.leaves(new.target_critic_params), jax.tree.leaves(expected_target)):
        close(a, b)
    assert int(new.step) == 1 and np.isfinite(float(metrics["value_loss"]))


def test_iql_reward_scale_from_return_range():
    stats = DatasetStats(np.zeros(3), np.ones(3), return_min=-1500.0, return_max=-500.0)
    close(return_range_reward_scale(stats, True, 1000.0), 1.0)  # 1000 / (−500 − −1500)
    close(return_range_reward_scale(stats._replace(return_max=-1000.0), True, 1000.0), 2.0)
    close(return_range_reward_scale(stats, False, 1000.0), 1.0)
    close(return_range_reward_scale(stats._replace(return_max=-1500.0), True, 1000.0), 1.0)  # no spread: unscaled


def test_iql_config_rejects_bad_expectile():
    with pytest.raises(HeronError, match="expectile"):
        iql.Config(expectile=1.0)


# --------------------------------------------------------------------------- TD3+BC


def test_td3bc_lambda_and_actor_loss():
    # λ = α / mean|Q| = 2.5 / mean(1, 3) = 1.25; loss = −λ mean(Q) + mean((π − a)²) = 1.25 + 0.25 = 1.5
    q = f32(1.0, -3.0)
    pi, action = jnp.array([[0.5], [-0.5]]), jnp.zeros((2, 1))
    close(td3bc.bc_lambda(q, 2.5), 1.25)
    loss, (lmbda, bc_term) = td3bc.actor_loss(q, pi, action, 2.5)
    close(loss, 1.5)
    close(lmbda, 1.25)
    close(bc_term, 0.25)
    # λ is a constant: dL/dQ_i = −λ / N = −0.625 (no term from λ's own dependence on Q)
    close(jax.grad(lambda q: td3bc.actor_loss(q, pi, action, 2.5)[0])(q), [-0.625, -0.625])
    # α = 0 is behaviour cloning
    close(td3bc.actor_loss(q, pi, action, 0.0)[0], 0.25)


def test_td3bc_act_normalises_raw_observations():
    obs_space, act_space = gym.spaces.Box(-10, 10, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    cfg = td3bc.Config(actor_hidden=(8,), critic_hidden=(8,))
    stats = DatasetStats(np.array([1.0, -2.0], np.float32), np.array([2.0, 0.5], np.float32), -1.0, 0.0)
    state = td3bc.init(jax.random.key(0), obs_space, act_space, cfg, dataset_stats=stats)
    close(state.obs_std, [2.001, 0.501])  # σ + 1e-3 (authors' eps)
    obs = jnp.array([[3.0, 1.0]])
    expected = state.actor.apply(state.actor_params, (obs - jnp.array([1.0, -2.0])) / jnp.array([2.001, 0.501]))
    close(td3bc.act(state, obs, jax.random.key(0), deterministic=True), expected)


# --------------------------------------------------------------------------- BC


def test_bc_gaussian_nll():
    # −log N(1; 0, 1) = ½ + ½ log 2π; −log N(1; 0, 2²) = ⅛ + log 2 + ½ log 2π; 2-D sums per sample, batch mean
    close(bc.gaussian_nll_loss(f32(0.0)[None], f32(0.0)[None], f32(1.0)[None]), 0.5 + HALF_LOG_2PI)
    one = 0.125 + math.log(2.0) + HALF_LOG_2PI
    mean, log_std = jnp.zeros((2, 2)), jnp.full((2, 2), math.log(2.0))
    action = jnp.array([[1.0, 1.0], [-1.0, 1.0]])
    close(bc.gaussian_nll_loss(mean, log_std, action), 2 * one, tol=1e-5)


def test_bc_mse_averages_batch_and_action_dims():
    # errors² (1, 0, 4, 1) -> mean 1.5
    close(bc.mse_loss(jnp.array([[1.0, 0.0], [2.0, 1.0]]), jnp.zeros((2, 2))), 1.5)


# --------------------------------------------------------------------------- dataset statistics


def test_dataset_stats_use_transition_observations_and_episode_returns():
    # Two episodes; the final observations (100, 200) are not o_t of any transition.
    eps = [dict(observations=np.array([[0.0], [2.0], [100.0]]), actions=np.zeros((2, 1)), rewards=np.array([1.0, 2.0]),
                terminations=np.array([False, True]), truncations=np.array([False, False])),
           dict(observations=np.array([[4.0], [200.0]]), actions=np.zeros((1, 1)), rewards=np.array([-5.0]),
                terminations=np.array([False]), truncations=np.array([True]))]
    ds = from_episodes(eps, gym.spaces.Box(-1e3, 1e3, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32))
    stats = dataset_stats(ds)
    close(stats.obs_mean, [2.0])  # mean of 0, 2, 4
    close(stats.obs_std, [math.sqrt(8 / 3)], tol=1e-5)  # population std
    assert (stats.return_min, stats.return_max) == (-5.0, 3.0)
    mean, std = dataset_obs_normalizer(stats, 1, True, 1e-3)
    close(mean, [2.0])
    close(std, [math.sqrt(8 / 3) + 1e-3], tol=1e-5)
    mean, std = dataset_obs_normalizer(stats, 1, False, 1e-3)
    close(mean, [0.0])
    close(std, [1.0])
