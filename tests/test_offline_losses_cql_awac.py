"""CQL and AWAC losses against hand-computed values, and the signs of their dual updates."""

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import awac, cql
from heron.errors import HeronError
from heron.types import Transition

f32 = lambda *x: jnp.asarray(x, jnp.float32)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- CQL


def test_uniform_density_is_half_to_the_action_dim():
    # Unif([-1, 1]^|A|) has density (1/2)^|A|
    close(cql.uniform_log_density(1), math.log(0.5))
    close(cql.uniform_log_density(3), 3 * math.log(0.5))


def test_importance_sampled_logsumexp_by_hand():
    # One sample each, |A| = 1: [Q_rand − log ½, Q_next − log π_next, Q_cur − log π_cur]
    #   = [0 + 0.693147, 1 − 0.5, 2 + 1] -> log(2 + e^0.5 + e^3) = log 23.734258 = 3.166919
    args = (f32(0.0), f32(1.0), f32(2.0), f32(0.5), f32(-1.0), 1)
    close(cql.cql_logsumexp(*args, temperature=1.0), 3.1669195)
    # temperature T = 2: 2 · logsumexp(cat / 2) = 3.942579 (a softer max, still ≥ the max 3)
    close(cql.cql_logsumexp(*args, temperature=2.0), 3.9425787)
    # the gradient into Q is the softmax over the samples; none flows into the log-densities
    grads = jax.grad(lambda q, lp: cql.cql_logsumexp(f32(0.0), f32(1.0), q, f32(0.5), lp, 1, 1.0).sum(),
                     argnums=(0, 1))(f32(2.0), f32(-1.0))
    close(grads[0], math.exp(3.0) / 23.734258)
    close(grads[1], 0.0)


def test_plain_logsumexp_includes_the_dataset_action():
    # importance_sample=False: logsumexp over [Q_rand, Q_data, Q_next, Q_cur] = logsumexp(0, 1.5, 1, 2) = 2.746567
    out = cql.cql_logsumexp(f32(0.0), f32(1.0), f32(2.0), f32(9.0), f32(9.0), 1, 1.0, q_data=jnp.float32(1.5))
    close(out, 2.7465673)


def test_gap_and_fixed_penalty():
    # two critics, batch of two: gaps mean(ood − Q_data) = mean(3 − 1, 4 − 1) = 2.5 and mean(0, 2) = 1
    ood, q_data = jnp.array([[3.0, 4.0], [2.0, 5.0]]), jnp.array([[1.0, 1.0], [2.0, 3.0]])
    gap = cql.cql_gap(ood, q_data)
    close(gap, [2.5, 1.0])
    close(cql.cql_gap(ood, q_data, clip_max=2.0), [2.0, 1.0])  # per-state clip before the mean
    close(cql.cql_penalty(gap, 5.0), 5.0 * 3.5)  # α_cql Σ_i Δ_i
    # Lagrange: Σ_i α' α_cql (Δ_i − τ) with α' = 2, τ = 1: 2·5·(1.5 + 0) = 15, no gradient into α'
    close(cql.cql_penalty(gap, 5.0, f32(2.0), 1.0), 15.0)
    close(jax.grad(lambda a: cql.cql_penalty(gap, 5.0, a, 1.0))(f32(2.0)), 0.0)


def test_penalty_pushes_sampled_q_down_and_data_q_up():
    q_s, q_d = f32(1.0, 2.0), f32(1.0)
    g_s, g_d = jax.grad(lambda s, d: cql.cql_penalty(cql.cql_gap(
        cql.cql_logsumexp(s[:1], s[1:], s[:1], f32(0.0), f32(0.0), 1, 1.0)[None], d[None]), 5.0), argnums=(0, 1))(q_s, q_d)
    assert (g_s > 0).all() and g_d < 0  # descent lowers Q at sampled actions, raises it at the data's
    close(g_d, -5.0)


def test_lagrange_multiplier_grows_when_gap_exceeds_target():
    # J(α') = −mean_i α' α_cql (Δ_i − τ); at log α' = 0, dJ/dlog α' = −5 · mean(12 − 10, 14 − 10) = −15
    grad = jax.grad(cql.alpha_prime_loss)(f32(0.0), f32(12.0, 14.0), 5.0, 10.0)
    close(grad, -15.0)  # negative gradient: descent raises α' (gap above target)
    assert jax.grad(cql.alpha_prime_loss)(f32(0.0), f32(8.0, 9.0), 5.0, 10.0) > 0  # gap below target: α' falls
    close(cql.alpha_prime_value(f32(100.0)), 1e6)  # clipped as in the authors' code


def test_temperature_rises_only_when_entropy_is_below_target():
    # dJ/dlog α = −(log π + H̄); H̄ = −1, log π = −0.5 (entropy 0.5 above target): gradient 1.5 > 0, α falls
    close(jax.grad(cql.temperature_loss)(f32(0.0), f32(-0.5), -1.0), 1.5)
    assert jax.grad(cql.temperature_loss)(f32(0.0), f32(2.0), -1.0) < 0  # too little entropy: α rises


def test_cql_target_with_and_without_entropy_backup():
    reward, terminated = f32(1.0, 2.0), f32(0.0, 1.0)
    next_q = jnp.array([[3.0, 5.0], [4.0, 1.0]])  # min over critics (3, 1)
    close(cql.cql_target(reward, terminated, next_q, 0.9), [1.0 + 0.9 * 3.0, 2.0])
    close(cql.cql_target(reward, terminated, next_q, 0.9, f32(0.5, 0.5), 0.2), [1.0 + 0.9 * (3.0 - 0.1), 2.0])


def _tiny_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
                      action=jnp.asarray(rng.uniform(-2, 2, size=(n, 1)), jnp.float32),
                      reward=jnp.asarray(rng.normal(size=n), jnp.float32),
                      next_obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
                      terminated=jnp.zeros(n, jnp.float32), truncated=jnp.zeros(n, jnp.float32))


SPACES = (gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32))


@pytest.mark.parametrize("target_gap, rises", [(-100.0, True), (100.0, False)])
def test_cql_lagrange_update_moves_alpha_prime_toward_the_target_gap(target_gap, rises):
    cfg = cql.Config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,), lagrange=True, target_action_gap=target_gap)
    state = cql.init(jax.random.key(0), *SPACES, cfg)
    new, metrics = jax.jit(cql.update, static_argnums=3)(state, _tiny_batch(), jax.random.key(1), cfg)
    assert (new.log_alpha_prime > state.log_alpha_prime) == rises, (new.log_alpha_prime, metrics["cql_gap"])
    assert np.isfinite(float(metrics["critic_loss"]))


def test_cql_fixed_alpha_leaves_alpha_prime_and_config_checks():
    cfg = cql.Config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,), max_target_backup=True, backup_entropy=True)
    state = cql.init(jax.random.key(0), *SPACES, cfg)
    new, metrics = jax.jit(cql.update, static_argnums=3)(state, _tiny_batch(), jax.random.key(1), cfg)
    assert new.log_alpha_prime == state.log_alpha_prime and np.isfinite(float(metrics["cql_penalty"]))
    with pytest.raises(HeronError):
        cql.Config(cql_alpha=-1.0)
    with pytest.raises(HeronError):
        cql.Config(num_sampled_actions=0)


# --------------------------------------------------------------------------- AWAC


def test_awac_weights_by_hand():
    # A = min_i Q_i(s, a) − min_i Q_i(s, ã) = (0.5, 2, 3) − (0, 1, −5) = (0.5, 1, 8)
    q_data = jnp.array([[1.0, 2.0, 3.0], [0.5, 2.5, 10.0]])
    q_pi = jnp.array([[0.0, 1.0, -5.0], [0.2, 3.0, -4.0]])
    w, adv = awac.awac_weights(q_data, q_pi, 1.0, 100.0)
    close(adv, [0.5, 1.0, 8.0])
    close(w, [math.exp(0.5), math.e, 100.0])  # exp(8) = 2981 clipped at 100
    w_half, _ = awac.awac_weights(q_data, q_pi, 0.5, 100.0)  # λ = ½ sharpens: exp(2 A)
    close(w_half, [math.e, math.exp(2.0), 100.0])
    close(jax.grad(lambda q: jnp.sum(awac.awac_weights(q, q_pi, 1.0, 100.0)[0]))(q_data), np.zeros((2, 3)))
    assert np.isfinite(awac.awac_weights(f32(1e4)[None], f32(0.0)[None], 1.0, 100.0)[0]).all()


def test_awac_actor_loss_and_target():
    close(awac.awac_actor_loss(f32(1.0, 2.0), f32(-1.0, -0.5)), 1.0)  # −mean(−1, −1)
    reward, terminated = f32(1.0, 2.0), f32(0.0, 1.0)
    close(awac.awac_target(reward, terminated, jnp.array([[3.0, 5.0], [4.0, 1.0]]), 0.9), [3.7, 2.0])
    close(awac.critic_loss(jnp.array([[1.0, 2.0], [0.0, 0.0]]), f32(1.0, 1.0)), 0.5 + 1.0)
