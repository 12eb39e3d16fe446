"""FamO2O: the β encoding and range map, the β-conditioned advantage-weighted loss and the balance
model's objective against hand-computed numbers; the balance model steers `act`; the online config."""

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import famo2o, get_agent, iql
from heron.errors import HeronError
from heron.loops import finetune
from heron.types import Transition

OBS, ACT = gym.spaces.Box(-8.0, 8.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32)  # Pendulum's


def random_batch(n: int, seed: int = 0) -> Transition:
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)
    return Transition(f(n, 3), 2 * f(n, 1), f(n), f(n, 3), np.zeros(n, np.float32), np.zeros(n, np.float32))


def arr(x):
    return jnp.asarray(x, jnp.float32)


def test_balance_encoding_is_interleaved_sinusoids():
    # d = 4, n = 10 000: frequencies 1 and 1/100
    e = np.asarray(famo2o.balance_encoding(arr([2.0, 0.0]), 4, 10000.0))
    np.testing.assert_allclose(e[0], [np.sin(2.0), np.cos(2.0), np.sin(0.02), np.cos(0.02)], rtol=1e-6)
    np.testing.assert_allclose(e[1], [0.0, 1.0, 0.0, 1.0], atol=1e-7)
    assert famo2o.balance_encoding(arr(np.zeros((3, 5))), 6, 10000.0).shape == (3, 5, 6)


def test_balance_output_maps_onto_the_range():
    np.testing.assert_allclose(famo2o.balance_to_beta(arr([-1.0, 0.0, 1.0, 0.5]), 1.0, 5.0), [1.0, 3.0, 5.0, 4.0])


def test_universal_actor_loss_uses_each_samples_own_beta():
    advantage, beta, log_prob = arr([1.0, -1.0, 0.5]), arr([2.0, 3.0, 10.0]), arr([-1.0, -2.0, -0.5])
    loss, w = famo2o.universal_actor_loss(advantage, beta, log_prob, max_weight=100.0)
    # w = [e², e⁻³, min(e⁵, 100)]
    np.testing.assert_allclose(w, [np.e**2, np.e**-3, 100.0], rtol=1e-6)
    assert float(loss) == pytest.approx((np.e**2 + 2 * np.e**-3 + 50.0) / 3, rel=1e-6)
    # one β for all samples is IQL's loss
    same, _ = famo2o.universal_actor_loss(advantage, arr([3.0] * 3), log_prob, 100.0)
    assert float(same) == pytest.approx(float(iql.awr_actor_loss(iql.awr_weights(advantage, 3.0, 100.0), log_prob)))


def test_balance_model_loss_by_hand():
    # min over the two critics: [1, 3]; α_b = 0.2
    loss = famo2o.balance_model_loss(arr([0.5, -0.5]), arr([[1.0, 4.0], [2.0, 3.0]]), 0.2)
    assert float(loss) == pytest.approx(((0.1 - 1.0) + (-0.1 - 3.0)) / 2)


def test_balance_model_gradient_moves_beta_towards_the_higher_valued_member():
    """With Q̄(s, a) = a and a universal policy whose mean action grows with β, descending L_b raises β."""
    spec = get_agent("famo2o")
    cfg = spec.config(actor_hidden=(8,), critic_hidden=(8,), value_hidden=(8,), balance_hidden=(8,), batch_size=4)
    state = spec.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    obs = jnp.zeros((4, 3), jnp.float32)

    def loss(params):
        beta, log_prob = famo2o._balance_sample(state, params, obs, jax.random.PRNGKey(1))
        action = jnp.tanh(beta)[:, None]  # a policy whose action grows with β
        return famo2o.balance_model_loss(log_prob, action.T, 0.0)  # Q̄(s, a) = a

    grads = jax.jit(jax.grad(loss))(state.balance_params)
    assert float(grads["params"]["Dense_0"]["bias"][0]) < 0.0  # descent raises the mean head's output, so β


def test_act_follows_the_balance_models_choice():
    spec = get_agent("famo2o")
    cfg = spec.config(actor_hidden=(16,), critic_hidden=(16,), value_hidden=(16,), balance_hidden=(16,))
    state = spec.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    obs = jnp.asarray(random_batch(5).obs)

    def with_balance_bias(value):  # the mean head (Dense_0) outputs its bias only: tanh μ_b(s) → ±1
        params = jax.tree_util.tree_map(lambda x: x, state.balance_params)
        head = params["params"]["Dense_0"]
        head["kernel"], head["bias"] = head["kernel"] * 0, head["bias"] * 0 + value
        return state.replace(balance_params=params)

    low, high = with_balance_bias(-20.0), with_balance_bias(20.0)
    np.testing.assert_allclose(famo2o.balance_beta(low, obs), 1.0)
    np.testing.assert_allclose(famo2o.balance_beta(high, obs), 5.0)
    act = jax.jit(famo2o.act, static_argnames="deterministic")
    a_low = act(low, obs, jax.random.PRNGKey(0), deterministic=True)
    a_high = act(high, obs, jax.random.PRNGKey(0), deterministic=True)
    mean_low, _ = famo2o._universal(low, low.actor_params, obs, jnp.full((5,), 1.0))
    np.testing.assert_allclose(a_low, 2.0 * mean_low, rtol=1e-5)  # Pendulum: env action = 2 × unit action
    assert not np.allclose(a_low, a_high)


def test_update_draws_beta_uniformly_offline_and_from_the_balance_model_online():
    spec = get_agent("famo2o")
    cfg = spec.config(actor_hidden=(16,), critic_hidden=(16,), value_hidden=(16,), balance_hidden=(16,), batch_size=64,
                      beta_min=2.0, beta_max=4.0)
    state = spec.init(jax.random.PRNGKey(0), OBS, ACT, cfg)
    batch = random_batch(64)
    new, metrics = jax.jit(spec.update, static_argnums=3)(state, batch, jax.random.PRNGKey(1), cfg)
    assert 2.0 <= float(metrics["beta_actor_mean"]) <= 4.0 and float(metrics["beta_balance_std"]) > 0
    assert int(new.balance_opt_state[0].count) == 1 and float(new.log_alpha) != float(state.log_alpha)
    online = finetune.online_config(spec, cfg, spec.finetune)
    assert online.beta_source == "balance" and online.lr_schedule == "constant" and cfg.beta_source == "uniform"
    _, on = jax.jit(spec.update, static_argnums=3)(state, batch, jax.random.PRNGKey(1), online)
    assert 2.0 <= float(on["beta_actor_mean"]) <= 4.0
    assert float(on["actor_loss"]) != float(metrics["actor_loss"])  # other β, other weights
    rule = finetune.resolve_rule(spec)
    assert rule.keep_offline_data and rule.updates_per_step == 1 and rule.warmup_steps == 0


def test_bad_config_is_one_clear_error():
    with pytest.raises(HeronError, match="beta_min < beta_max"):
        famo2o.Config(beta_min=5.0, beta_max=1.0)
    with pytest.raises(HeronError, match="encoding_dim"):
        famo2o.Config(encoding_dim=5)
    assert dataclasses.replace(famo2o.Config(), beta_source="balance").beta_source == "balance"
