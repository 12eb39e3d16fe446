"""The pure-JAX envs reproduce Gymnasium 1.4's CartPole-v1 and Pendulum-v1."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.envs.jax_envs import (
    CartPole,
    CartPoleState,
    Pendulum,
    PendulumState,
    auto_reset_step,
    available_jax_envs,
    make_jax_env,
)
from heron.errors import HeronError


def _random_cartpole_states(rng, n):
    # Within the non-terminal region and beyond it, with large velocities too.
    return np.stack([rng.uniform(-2.6, 2.6, n), rng.uniform(-3, 3, n), rng.uniform(-0.25, 0.25, n),
                     rng.uniform(-3, 3, n)], axis=1).astype(np.float32)


def test_cartpole_step_matches_gymnasium():
    env, genv = CartPole(), gym.make("CartPole-v1")
    genv.reset(seed=0)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    checked_terminal = 0
    for s in _random_cartpole_states(rng, 300):
        for action in (0, 1):
            genv.unwrapped.state = s.astype(np.float64)
            genv.unwrapped.steps_beyond_terminated = None
            g_obs, g_rew, g_term, g_trunc, _ = genv.step(action)
            state = CartPoleState(jnp.asarray(s, jnp.float32), jnp.int32(0))
            _, obs, rew, term, trunc = step(jax.random.PRNGKey(0), state, jnp.int32(action))
            np.testing.assert_allclose(np.asarray(obs), g_obs, rtol=1e-5, atol=1e-6)
            assert float(rew) == g_rew
            # Termination thresholds compare the new state; skip states within rounding of the edge.
            margin = min(abs(abs(g_obs[0]) - 2.4), abs(abs(g_obs[2]) - env.theta_threshold_radians))
            if margin > 1e-5:
                assert bool(term) == g_term
                checked_terminal += g_term
            assert not bool(trunc) and not g_trunc
            genv.reset(seed=0)  # clear the TimeLimit counter
    assert checked_terminal > 50  # the sample covered terminal transitions too


def test_pendulum_step_matches_gymnasium():
    env, genv = Pendulum(), gym.make("Pendulum-v1")
    genv.reset(seed=0)
    step = jax.jit(env.step)
    rng = np.random.default_rng(1)
    for _ in range(300):
        th, thdot = rng.uniform(-10, 10), rng.uniform(-8, 8)
        u = np.array([rng.uniform(-3, 3)], np.float32)  # out-of-range torques are clipped by the env
        genv.unwrapped.state = np.array([th, thdot], np.float64)
        g_obs, g_rew, g_term, g_trunc, _ = genv.step(u)
        state = PendulumState(jnp.array([th, thdot], jnp.float32), jnp.int32(0))
        _, obs, rew, term, trunc = step(jax.random.PRNGKey(0), state, jnp.asarray(u))
        np.testing.assert_allclose(np.asarray(obs), g_obs, rtol=1e-5, atol=2e-5)
        np.testing.assert_allclose(float(rew), g_rew, rtol=1e-5, atol=1e-5)
        assert not bool(term) and not g_term and not bool(trunc) and not g_trunc
        genv.reset(seed=0)


def test_trajectories_match_gymnasium_over_an_episode():
    """Same start, same actions: the trajectories agree (float32 vs float64 drift stays tiny)."""
    for env, genv, actions in [
        (CartPole(), gym.make("CartPole-v1"), np.random.default_rng(0).integers(0, 2, 30)),
        (Pendulum(), gym.make("Pendulum-v1"), np.random.default_rng(0).uniform(-2, 2, (200, 1)).astype(np.float32)),
    ]:
        g_obs, _ = genv.reset(seed=3)
        state, obs = env.reset(jax.random.PRNGKey(0))
        if isinstance(env, CartPole):
            state = CartPoleState(jnp.asarray(genv.unwrapped.state, jnp.float32), jnp.int32(0))
        else:
            state = PendulumState(jnp.asarray(genv.unwrapped.state, jnp.float32), jnp.int32(0))
        step = jax.jit(env.step)
        for t, a in enumerate(actions):
            g_obs, g_rew, g_term, g_trunc, _ = genv.step(a)
            state, obs, rew, term, trunc = step(jax.random.PRNGKey(0), state, jnp.asarray(a))
            np.testing.assert_allclose(np.asarray(obs), g_obs, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(float(rew), g_rew, rtol=1e-4, atol=1e-4)
            assert (bool(term), bool(trunc)) == (g_term, g_trunc), t
            if g_term or g_trunc:
                break


@pytest.mark.parametrize("env_id, limit", [("CartPole-v1", 500), ("Pendulum-v1", 200)])
def test_truncation_at_the_time_limit(env_id, limit):
    env = make_jax_env(env_id)
    assert env.max_episode_steps == limit == gym.spec(env_id).max_episode_steps
    state, _ = env.reset(jax.random.PRNGKey(0))
    # Keep CartPole upright artificially: only the counter matters for truncation.
    state = state.replace(time=jnp.int32(limit - 2))
    action = jnp.int32(0) if env_id.startswith("CartPole") else jnp.zeros((1,), jnp.float32)
    state, _, _, term, trunc = env.step(jax.random.PRNGKey(1), state, action)
    assert not bool(trunc) and not bool(term)
    state, _, _, term, trunc = env.step(jax.random.PRNGKey(1), state, action)
    assert bool(trunc) and not bool(term)


def test_truncated_and_terminated_both_on_the_last_step():
    """Like gymnasium's TimeLimit, a terminal last step reports both flags."""
    env = CartPole()
    state = CartPoleState(jnp.array([2.39, 1.0, 0.0, 0.0], jnp.float32), jnp.int32(499))
    _, _, _, term, trunc = env.step(jax.random.PRNGKey(0), state, jnp.int32(1))
    assert bool(term) and bool(trunc)


def test_cartpole_terminates_not_truncates_when_the_pole_falls():
    env = CartPole()
    state, _ = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for t in range(500):
        state, obs, reward, term, trunc = step(jax.random.PRNGKey(0), state, jnp.int32(1))  # always push right
        assert float(reward) == 1.0  # +1 including the terminal step
        if term:
            break
    assert bool(term) and not bool(trunc) and t < 50
    assert abs(float(obs[2])) > env.theta_threshold_radians or abs(float(obs[0])) > env.x_threshold


def test_auto_reset_returns_true_final_obs_and_continues_from_reset():
    env = CartPole()
    state = CartPoleState(jnp.array([2.39, 1.0, 0.0, 0.0], jnp.float32), jnp.int32(7))
    key = jax.random.PRNGKey(5)
    out = auto_reset_step(env, key, state, jnp.int32(1))
    _, true_obs, _, _, _ = env.step(jax.random.split(key)[0], state, jnp.int32(1))
    assert bool(out.terminated)
    np.testing.assert_array_equal(out.next_obs, true_obs)
    assert float(out.next_obs[0]) > 2.4  # the final obs, not the reset one
    assert np.all(np.abs(np.asarray(out.obs)) <= 0.05) and int(out.env_state.time) == 0
    # Not done: continue from the stepped state.
    state2 = CartPoleState(jnp.zeros(4, jnp.float32), jnp.int32(7))
    out2 = auto_reset_step(env, key, state2, jnp.int32(1))
    np.testing.assert_array_equal(out2.obs, out2.next_obs)
    assert int(out2.env_state.time) == 8


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_reset_distribution_and_spaces_match_gymnasium(env_id):
    env, genv = make_jax_env(env_id), gym.make(env_id)
    assert env.observation_space == genv.observation_space
    assert env.action_space == genv.action_space
    states, obs = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 20_000))
    g_states = np.stack([(genv.reset(seed=i), genv.unwrapped.state)[1] for i in range(2000)])
    if env_id == "CartPole-v1":
        raw = np.asarray(states.physics)
        bound = np.array([0.05] * 4)
    else:
        raw = np.asarray(states.physics)
        bound = np.array([np.pi, 1.0])
    assert np.all(np.abs(raw) <= bound) and np.all(np.abs(g_states) <= bound)
    # Uniform on [-b, b]: mean 0, std b/sqrt(3), and it fills the range.
    np.testing.assert_allclose(raw.mean(0), 0.0, atol=0.03 * bound.max())
    np.testing.assert_allclose(raw.std(0), bound / np.sqrt(3), rtol=0.02)
    np.testing.assert_allclose(g_states.std(0), bound / np.sqrt(3), rtol=0.06)
    assert np.all(raw.max(0) > 0.99 * bound) and np.all(raw.min(0) < -0.99 * bound)
    assert np.all(np.asarray(states.time) == 0)
    assert obs.dtype == jnp.float32 and obs.shape[1:] == genv.observation_space.shape


def test_registry():
    assert available_jax_envs() == ["CartPole-v1", "Pendulum-v1"]
    with pytest.raises(HeronError, match="CartPole-v1, Pendulum-v1"):
        make_jax_env("Cartpole-v1")
    with pytest.raises(HeronError, match="did you mean 'CartPole-v1'"):
        make_jax_env("CartPole-v0")
    assert hash(make_jax_env("CartPole-v1")) == hash(CartPole())  # usable as a static jit argument
