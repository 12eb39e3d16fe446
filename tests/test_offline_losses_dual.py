"""XQL's Gumbel losses and f-DVL's value losses against hand-computed values."""

import dataclasses
import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import fdvl, xql
from heron.errors import HeronError
from heron.types import Transition

f32 = lambda *x: jnp.asarray(x, jnp.float32)
E = math.e


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def grad_v(loss, q, v):
    """dL/dV for a scalar V shared by the samples q (u = q − V)."""
    return float(jax.grad(lambda v: loss(q - v))(jnp.float32(v)))


# --------------------------------------------------------------------------- XQL


def test_gumbel_loss_values():
    # β = 2, u = (0, 2, −2): z = (0, 1, −1); e^z − z − 1 = (0, e − 2, 1/e); mean (e − 2 + 1/e)/3 = 0.361016
    close(xql.gumbel_loss(f32(0.0, 2.0, -2.0), 2.0, 7.0), (E - 2 + 1 / E) / 3)


def test_gumbel_loss_clips_z_from_above_only():
    # β = 1, max_clip 7: z = (10 -> 7, −10): (e^7 − 8, e^−10 + 9); and zero gradient where clipped
    u = f32(10.0, -10.0)
    close(xql.gumbel_loss(u, 1.0, 7.0), ((math.exp(7) - 8) + (math.exp(-10) + 9)) / 2, tol=1e-5)
    g = jax.grad(lambda d: xql.gumbel_loss(d, 1.0, 7.0))(u)
    close(g, [0.0, 0.5 * (math.exp(-10) - 1)], tol=1e-6)  # d/du (e^u − u − 1)/2 = (e^u − 1)/2 below the clip


def test_gumbel_minimiser_is_the_soft_maximum():
    # samples {0, 2}, β = 1: V* = log mean e^Q = log((1 + e²)/2) = 1.433781 (above the mean 1, below the max 2)
    q = f32(0.0, 2.0)
    v_star = math.log((1 + E**2) / 2)
    loss = lambda u: xql.gumbel_loss(u, 1.0, 7.0)
    close(grad_v(loss, q, v_star), 0.0, tol=1e-5)
    assert grad_v(loss, q, 1.0) < 0 < grad_v(loss, q, 1.9)


def test_gumbel_rescale_loss_scales_by_the_batch_max():
    # β = 1, u = (1, 3): z max m = 3; loss = mean(e^z − z − 1) e^−3 = ((e − 2) + (e³ − 4))/2 · e^−3 = 0.411292
    u = f32(1.0, 3.0)
    plain = ((E - 2) + (E**3 - 4)) / 2
    close(xql.gumbel_rescale_loss(u, 1.0, 7.0), plain * math.exp(-3), tol=1e-6)
    # the max is held constant: the gradient is the plain loss's, times e^−m
    g_plain = jax.grad(lambda d: xql.gumbel_loss(d, 1.0, 7.0))(u)
    close(jax.grad(lambda d: xql.gumbel_rescale_loss(d, 1.0, 7.0))(u), g_plain * math.exp(-3), tol=1e-6)


def test_gumbel_rescale_floors_the_max_at_minus_one_and_clips():
    # all z below −1: m = −1, factor e: u = (−2, −3), β = 1 -> mean(e^z − z − 1) · e
    u = f32(-2.0, -3.0)
    plain = ((math.exp(-2) + 1) + (math.exp(-3) + 2)) / 2
    close(xql.gumbel_rescale_loss(u, 1.0, 7.0), plain * E, tol=1e-6)
    # z = 100/2 = 50 clipped to 7 = m: (e^0 − 7 e^−7 − e^−7) = 1 − 8 e^−7, finite (no e^50 overflow)
    close(xql.gumbel_rescale_loss(f32(100.0), 2.0, 7.0), 1 - 8 * math.exp(-7), tol=1e-6)
    assert np.isfinite(xql.gumbel_rescale_loss(f32(1e6, 0.0), 1.0, 7.0))


def test_huber_critic_loss():
    # δ = 1; member 0 errors (0.5, 3): (0.125, 2.5) -> 1.3125; member 1 errors (−2, 0): (1.5, 0) -> 0.75; sum 2.0625
    q, y = jnp.array([[1.5, 4.0], [-1.0, 1.0]]), f32(1.0, 1.0)
    close(xql.huber_critic_loss(q, y, 1.0), 2.0625)
    close(jax.grad(lambda t: xql.huber_critic_loss(q, t, 1.0))(y), [0.0, 0.0])  # targets are constants
    # δ = 20 (the authors'): within ±20 it is half the squared error
    close(xql.huber_critic_loss(q, y, 20.0), (0.125 + 4.5) / 2 + (2.0 + 0.0) / 2)


# --------------------------------------------------------------------------- f-DVL


def test_chi_square_loss_values():
    # λ = 0.5, u = (2, −2, −6): max(u + u²/4, 0) = (3, 0, 3); 0.5·(3, 0, 3) − 0.5·(2, −2, −6) = (0.5, 1, 4.5); mean 2
    close(fdvl.chi_square_loss(f32(2.0, -2.0, -6.0), 0.5), 2.0)
    # λ = 1: only the floored conjugate; no force from −4 < u < 0, pull down below −4
    close(fdvl.chi_square_loss(f32(2.0, -1.0), 1.0), 1.5)
    g = jax.grad(lambda d: fdvl.chi_square_loss(d, 1.0))(f32(2.0, -1.0, -6.0))
    close(g, [2.0 / 3, 0.0, -2.0 / 3])  # d/du (u + u²/4)/3 = (1 + u/2)/3


def test_total_variation_loss_values_and_quantile():
    # λ = 0.8, u = (1, −2): 0.8·(1, 0) − 0.2·(1, −2) = (0.6, 0.4); mean 0.5
    close(fdvl.total_variation_loss(f32(1.0, -2.0), 0.8), 0.5)
    # its minimiser is the level-(1 − (1 − λ)/λ) quantile: λ = 0.8 -> 0.75; samples 0..3: dL/dV = −0.8 P(u > 0) + 0.2
    q = f32(0.0, 1.0, 2.0, 3.0)
    loss = lambda u: fdvl.total_variation_loss(u, 0.8)
    close(grad_v(loss, q, 1.5), -0.8 * 0.5 + 0.2)  # two of four above V: still pushed up
    close(grad_v(loss, q, 2.5), -0.8 * 0.25 + 0.2)  # one of four above: stationary (the 0.75-quantile region)
    assert grad_v(loss, q, 3.5) > 0  # above every Q̄: pushed down


def test_fdvl_value_loss_dispatch():
    u = f32(1.0, -3.0, 0.5)
    cfg = fdvl.Config()
    close(fdvl.value_loss(u, cfg), fdvl.chi_square_loss(u, 1.0))
    close(fdvl.value_loss(u, dataclasses.replace(cfg, f="total_variation", temperature=0.8)),
          fdvl.total_variation_loss(u, 0.8))
    close(fdvl.value_loss(u, dataclasses.replace(cfg, f="reverse_kl", temperature=8.0)),
          xql.gumbel_rescale_loss(u, 8.0, 5.0))  # XQL is f-DVL's reverse-KL instance


def test_configs_reject_unusable_values():
    with pytest.raises(HeronError, match="total_variation"):
        fdvl.Config(f="total_variation", temperature=0.5)
    with pytest.raises(HeronError, match="f must be"):
        fdvl.Config(f="kl")
    with pytest.raises(HeronError, match="beta"):
        xql.Config(beta=0.0)
    with pytest.raises(HeronError, match="xql"):
        xql.init(jax.random.key(0), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), xql.Config())


# --------------------------------------------------------------------------- one update


def _batch(rng, n=8):
    return Transition(obs=rng.uniform(-1, 1, (n, 3)).astype(np.float32), action=rng.uniform(-2, 2, (n, 1)).astype(np.float32),
                      reward=rng.normal(size=n).astype(np.float32), next_obs=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                      terminated=np.zeros(n, np.float32), truncated=np.zeros(n, np.float32))


@pytest.mark.parametrize("module, extra", [(xql, {}), (fdvl, {}), (fdvl, {"f": "total_variation", "temperature": 0.8})])
def test_update_moves_v_and_averages_targets(module, extra):
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)
    cfg = module.Config(batch_size=8, actor_hidden=(8,), critic_hidden=(8,), value_hidden=(8,), tau=0.5, **extra)
    state = module.init(jax.random.key(0), obs_space, act_space, cfg)
    assert "LayerNorm_0" in state.value_params["params"]["MLP_0"]  # the authors' LayerNorm V
    new, metrics = module.update(state, _batch(np.random.default_rng(0)), jax.random.key(1), cfg)
    expected = jax.tree.map(lambda t, o: 0.5 * o + 0.5 * t, state.target_critic_params, new.critic_params)
    for a, b in zip(jax.tree.leaves(new.target_critic_params), jax.tree.leaves(expected)):
        close(a, b, tol=1e-6)
    assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.value_params), jax.tree.leaves(new.value_params)))
