"""SAC, TD3 and DQN losses and targets against hand-computed values on tiny inputs."""

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import dqn, sac, td3
from heron.core.normalization import ema_update
from heron.errors import HeronError
from heron.types import Transition

QUICK = {"xla_backend_optimization_level": 0}  # these tests check values, not speed: compile fast
f32 = lambda *x: jnp.asarray(x, jnp.float32)  # noqa: E731


def quick_init(agent, obs_space, act_space, cfg, seed=0):
    return jax.jit(lambda key: agent.init(key, obs_space, act_space, cfg), compiler_options=QUICK)(jax.random.key(seed))


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- SAC


def test_soft_q_target():
    # min Q̄ = [1, 3]; y0 = 1 + 0.9 (1 − 0.2·0.5) = 1.81; y1 terminal = 0.5
    next_q = jnp.array([[2.0, 3.0], [1.0, 5.0]])
    y = sac.soft_q_target(f32(1.0, 0.5), f32(0.0, 1.0), next_q, f32(0.5, -1.0), 0.2, 0.9)
    close(y, [1.81, 0.5])


def test_sac_critic_loss_is_half_sum_of_mses():
    # member 0 errors (0, 1) -> mse 0.5; member 1 errors (2, 3) -> mse 6.5; ½ (0.5 + 6.5) = 3.5
    close(sac.critic_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), f32(1.0, 1.0)), 3.5)


def test_sac_critic_loss_has_no_gradient_through_target():
    grad = jax.grad(lambda y: sac.critic_loss(jnp.ones((2, 2)), y))(f32(0.0, 0.0))
    close(grad, [0.0, 0.0])


def test_sac_actor_loss():
    # mean(α log π − min Q) = mean(0.1 − 1, −0.2 − 3) = −2.05
    close(sac.actor_loss(f32(0.5, -1.0), jnp.array([[2.0, 3.0], [1.0, 5.0]]), 0.2), -2.05)


def test_temperature_loss_value_and_direction():
    # −mean(α (log π + H̄)) with α = 0.5, log π + H̄ = (−0.5, −2) -> 0.625
    log_alpha = jnp.log(0.5)
    loss, grad = jax.value_and_grad(sac.temperature_loss)(log_alpha, f32(0.5, -1.0), -1.0)
    close(loss, 0.625)
    close(grad, 0.625)  # d/d log α of −α c is −α c: entropy above target -> α shrinks
    assert jax.grad(sac.temperature_loss)(log_alpha, f32(3.0, 3.0), -1.0) < 0  # entropy too low -> α grows
    # no gradient reaches the policy's log-probabilities
    close(jax.grad(sac.temperature_loss, argnums=1)(log_alpha, f32(0.5, -1.0), -1.0), [0.0, 0.0])


def test_action_unit_mapping_round_trip():
    low, high = (-2.0, 0.0), (2.0, 1.0)
    env_action = jnp.array([[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]])
    unit = sac.to_unit(env_action, low, high)
    close(unit, [[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    close(sac.from_unit(unit, low, high), env_action)


def _continuous_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(
        obs=rng.normal(size=(n, 3)).astype(np.float32),
        action=rng.uniform(-2, 2, (n, 1)).astype(np.float32),
        reward=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, 3)).astype(np.float32),
        terminated=rng.random(n) < 0.3,
        truncated=np.zeros(n, bool),
    )


OBS3, ACT1 = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,))


def test_sac_update_polyak_target_and_fixed_temperature():
    cfg = dataclasses.replace(sac.Config(), actor_hidden=(8,), critic_hidden=(8,), tau=0.25, autotune=False,
                              initial_alpha=0.1)
    state = quick_init(sac, OBS3, ACT1, cfg)
    new, metrics = jax.jit(sac.update, static_argnames="cfg", compiler_options=QUICK)(state, _continuous_batch(), jax.random.key(1), cfg)
    # targets move by τ toward the updated critics
    expected = jax.tree.map(lambda t, o: 0.25 * o + 0.75 * t, state.target_critic_params, new.critic_params)
    jax.tree.map(close, new.target_critic_params, expected)
    assert int(new.step) == 1
    # autotune off: α stays at α₀
    close(jnp.exp(new.log_alpha), 0.1)
    close(metrics["alpha"], 0.1)


def test_ema_update():
    target, online = {"w": f32(0.0, 2.0)}, {"w": f32(1.0, 4.0)}
    close(ema_update(target, online, 0.005)["w"], [0.005, 2.01])
    close(ema_update(target, online, 1.0)["w"], [1.0, 4.0])


# --------------------------------------------------------------------------- TD3


def test_target_policy_action_noise_disabled_and_clipped():
    next_action = f32(0.3, -0.9)
    close(td3.target_policy_action(next_action, f32(0.0, 0.0), 0.5), [0.3, -0.9])
    # noise clipped to ±0.5, then the action to [-1, 1]: 0.3 + 0.5 = 0.8, −0.9 − 0.5 -> −1
    close(td3.target_policy_action(next_action, f32(1.0, -1.0), 0.5), [0.8, -1.0])


def test_td3_target():
    # min Q' = [2, 1]; y0 = 1 + 0.5·2 = 2; y1 terminal = 2
    close(td3.td3_target(f32(1.0, 2.0), f32(0.0, 1.0), jnp.array([[3.0, 1.0], [2.0, 4.0]]), 0.5), [2.0, 2.0])


def test_td3_critic_and_actor_loss():
    close(td3.critic_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]), f32(1.0, 1.0)), 7.0)  # 0.5 + 6.5
    close(td3.actor_loss(f32(1.0, 3.0)), -2.0)


def test_td3_first_critic_matches_ensemble_member_zero():
    cfg = dataclasses.replace(td3.Config(), actor_hidden=(8,), critic_hidden=(8, 8))
    state = quick_init(td3, OBS3, ACT1, cfg)
    obs, action = jnp.ones((5, 3)), jnp.full((5, 1), 0.3)
    module, params = td3.first_critic(state.critic, state.critic_params)
    close(module.apply(params, obs, action), state.critic.apply(state.critic_params, obs, action)[0])


def test_td3_policy_delay_and_targets():
    cfg = dataclasses.replace(td3.Config(), actor_hidden=(8,), critic_hidden=(8,), policy_delay=2)
    update = jax.jit(td3.update, static_argnames="cfg", compiler_options=QUICK)
    s0 = quick_init(td3, OBS3, ACT1, cfg)
    s1, _ = update(s0, _continuous_batch(seed=1), jax.random.key(1), cfg)
    # step 1: only the critic moves
    assert not np.array_equal(jax.tree.leaves(s1.critic_params)[0], jax.tree.leaves(s0.critic_params)[0])
    jax.tree.map(np.testing.assert_array_equal, s1.actor_params, s0.actor_params)
    jax.tree.map(np.testing.assert_array_equal, s1.target_actor_params, s0.target_actor_params)
    jax.tree.map(np.testing.assert_array_equal, s1.target_critic_params, s0.target_critic_params)
    # step 2: actor and both targets move, targets by τ
    s2, metrics = update(s1, _continuous_batch(seed=2), jax.random.key(2), cfg)
    assert not np.array_equal(jax.tree.leaves(s2.actor_params)[0], jax.tree.leaves(s1.actor_params)[0])
    expected = jax.tree.map(lambda t, o: cfg.tau * o + (1 - cfg.tau) * t, s1.target_critic_params, s2.critic_params)
    jax.tree.map(close, s2.target_critic_params, expected)
    close(metrics["actor_loss"], s2.last_actor_loss)
    assert int(s2.step) == 2


# --------------------------------------------------------------------------- DQN


def test_double_dqn_target_uses_online_argmax_and_target_value():
    q_online = jnp.array([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])  # argmax: 1, 0
    q_target = jnp.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])  # values there: 20, 40
    close(dqn.double_dqn_target(f32(1.0, 1.0), f32(0.0, 1.0), q_online, q_target, 0.5), [11.0, 1.0])
    close(dqn.dqn_target(f32(1.0, 1.0), f32(0.0, 1.0), q_target, 0.5), [16.0, 1.0])  # max = 30


def test_q_loss_mse_and_huber():
    q, y = f32(1.0, 2.0), f32(0.0, 4.0)  # errors 1, −2
    close(dqn.q_loss(q, y), 2.5)  # (1 + 4) / 2
    close(dqn.q_loss(q, y, huber=True), 1.0)  # (0.5 + 1.5) / 2
    close(jax.grad(lambda t: dqn.q_loss(q, t))(y), [0.0, 0.0])


def test_linear_epsilon():
    close(dqn.linear_epsilon(0.0, 1.0, 0.05, 100.0), 1.0)
    close(dqn.linear_epsilon(50.0, 1.0, 0.05, 100.0), 0.525)
    close(dqn.linear_epsilon(200.0, 1.0, 0.05, 100.0), 0.05)


OBS4, ACT2 = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)


def _discrete_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n),
                      rng.normal(size=n).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32),
                      rng.random(n) < 0.2, np.zeros(n, bool))


def test_dqn_env_step_clock_epsilon_and_hard_target_copy():
    # clock: 10 + 10·k env steps after k updates; C = 50 -> the copy happens on the 4th update (40 -> 50)
    cfg = dataclasses.replace(dqn.Config(), hidden=(8,), learning_starts=10, train_frequency=10,
                              target_network_frequency=50, total_timesteps=200, exploration_fraction=0.5)
    update = jax.jit(dqn.update, static_argnames="cfg", compiler_options=QUICK)
    state = quick_init(dqn, OBS4, ACT2, cfg)
    close(dqn.epsilon(state), 1.0 - 0.95 * 10 / 100)
    for k in range(1, 6):
        previous = state
        state, metrics = update(state, _discrete_batch(seed=k), jax.random.key(k), cfg)
        assert int(dqn.env_steps(state)) == 10 + 10 * k
        close(metrics["epsilon"], max(0.05, 1.0 - 0.95 * (10 + 10 * k) / 100))
        if k == 4:
            assert float(metrics["target_synced"]) == 1.0
            jax.tree.map(np.testing.assert_array_equal, state.target_params, state.params)
        else:
            assert float(metrics["target_synced"]) == 0.0
            jax.tree.map(np.testing.assert_array_equal, state.target_params, previous.target_params)


def test_dqn_clock_counts_gradient_steps_and_envs():
    cfg = dataclasses.replace(dqn.Config(), hidden=(8,), learning_starts=100, train_frequency=1, num_envs=3,
                              gradient_steps=2)
    state = quick_init(dqn, OBS4, ACT2, cfg)
    assert [int(dqn.env_steps(state, jnp.int32(k))) for k in range(5)] == [100, 101, 103, 104, 106]


def test_dqn_act_greedy_and_exploring():
    cfg = dataclasses.replace(dqn.Config(), hidden=(8,), start_e=1.0, end_e=1.0)
    state = quick_init(dqn, OBS4, ACT2, cfg)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(256, 4)), jnp.float32)
    greedy = jnp.argmax(state.q_network.apply(state.params, obs), axis=-1)
    np.testing.assert_array_equal(dqn.act(state, obs, jax.random.key(1), True), greedy)
    explored = dqn.act(state, obs, jax.random.key(1), False)  # ε = 1: uniform over both actions
    assert 0.3 < float(jnp.mean(explored)) < 0.7


def test_bad_configs_fail_fast():
    with pytest.raises(HeronError, match="batch_size"):
        sac.Config(batch_size=0)
    with pytest.raises(HeronError, match="policy_delay"):
        td3.Config(policy_delay=0)
    with pytest.raises(HeronError, match="Discrete"):
        dqn.init(jax.random.key(0), OBS4, ACT1, dqn.Config())
    with pytest.raises(HeronError, match="Box"):
        sac.init(jax.random.key(0), OBS4, ACT2, sac.Config())
