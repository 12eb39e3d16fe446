"""PPO: losses against hand-computed numbers, and the agent contract."""

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from heron.agents import get_agent, ppo
from heron.types import Transition


def test_gae_hand_example_with_truncation_and_termination():
    """Column 0: t=1 is truncated (bootstraps from its TRUE final obs, V=10, though the next
    row's obs is a reset one), t=3 terminated (no bootstrap from V(s'_3)=5). Column 1: no
    episode end, so the rollout's last step bootstraps from V(s'_3)."""
    gamma, lam = 0.9, 0.8
    values = jnp.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    next_values = jnp.array([[2.0, 0.0], [10.0, 0.0], [4.0, 0.0], [5.0, 1.0]])
    rewards = jnp.array([[1.0, 0.0]] * 4)
    terminated = jnp.array([[0, 0], [0, 0], [0, 0], [1, 0]], jnp.float32)
    truncated = jnp.array([[0, 0], [1, 0], [0, 0], [0, 0]], jnp.float32)
    adv, ret = ppo.gae(values, next_values, rewards, terminated, truncated, gamma, lam)
    # δ = r + γ(1−term)V(s') − V(s):  [1.8, 8.0, 1.6, −3.0];  γλ = 0.72
    # Â3 = −3, Â2 = 1.6 + 0.72·(−3) = −0.56, Â1 = 8.0 (episode ended), Â0 = 1.8 + 0.72·8 = 7.56
    # column 1: δ = [0, 0, 0, 0.9] → Â = 0.9·0.72^k backwards
    expected = np.array([[7.56, 0.9 * 0.72**3], [8.0, 0.9 * 0.72**2], [-0.56, 0.9 * 0.72], [-3.0, 0.9]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(ret, expected + np.asarray(values), rtol=1e-6)


def test_gae_lambda_one_is_discounted_return_plus_bootstrap():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(6, 1)).astype(np.float32)
    v = rng.normal(size=(6, 1)).astype(np.float32)
    nv = np.concatenate([v[1:], [[2.0]]]).astype(np.float32)
    z = np.zeros_like(r)
    _, ret = ppo.gae(jnp.asarray(v), jnp.asarray(nv), jnp.asarray(r), z, z, 0.95, 1.0)
    expected = [sum(0.95**k * r[t + k, 0] for k in range(6 - t)) + 0.95 ** (6 - t) * 2.0 for t in range(6)]
    np.testing.assert_allclose(ret[:, 0], expected, rtol=1e-5)


def test_clipped_surrogate_hand_example():
    # ratios [1.5, 0.5, 1.1, 0.7], advantages [1, 1, −1, −1], ε = 0.2:
    # max(−Ar, −A clip(r)) = [max(−1.5, −1.2), max(−0.5, −0.8), max(1.1, 1.1), max(0.7, 0.8)]
    #                      = [−1.2, −0.5, 1.1, 0.8]  → mean 0.05
    ratio = jnp.array([1.5, 0.5, 1.1, 0.7])
    old = jnp.array([0.3, -1.0, 0.0, 2.0])
    loss = ppo.clipped_surrogate_loss(old + jnp.log(ratio), old, jnp.array([1.0, 1.0, -1.0, -1.0]), 0.2)
    np.testing.assert_allclose(loss, 0.05, rtol=1e-5)


def test_value_loss_hand_example():
    values, old, returns = jnp.array([1.5, 0.0]), jnp.array([1.0, 1.0]), jnp.array([2.0, 2.0])
    # unclipped (V−R)² = [0.25, 4]; clipped V = [1.2, 0.8] → [0.64, 1.44]; max → [0.64, 4]
    np.testing.assert_allclose(ppo.value_loss(values, old, returns, 0.2, True), 0.5 * (0.64 + 4.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(ppo.value_loss(values, old, returns, 0.2, False), 0.5 * (0.25 + 4.0) / 2, rtol=1e-6)


def test_clipped_gaussian_log_prob():
    mean, log_std = jnp.array([[0.5, -1.0]]), jnp.array([[0.0, np.log(0.5)]])
    low, high = jnp.array([-2.0, -2.0]), jnp.array([2.0, 2.0])
    inside = jnp.array([[1.0, -1.5]])
    np.testing.assert_allclose(ppo.clipped_gaussian_log_prob(mean, log_std, inside, low, high),
                               stats.norm.logpdf(1.0, 0.5, 1.0) + stats.norm.logpdf(-1.5, -1.0, 0.5), rtol=1e-5)
    at_bounds = jnp.array([[2.0, -2.0]])  # mass beyond each bound
    np.testing.assert_allclose(ppo.clipped_gaussian_log_prob(mean, log_std, at_bounds, low, high),
                               stats.norm.logsf(2.0, 0.5, 1.0) + stats.norm.logcdf(-2.0, -1.0, 0.5), rtol=1e-5)


def _rollout(state, obs_space, act_space, key, T=8, N=3):
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (T, N, *obs_space.shape))
    action = jax.vmap(lambda o, k: ppo.act(state, o, k, False))(obs, jax.random.split(k2, T))
    reward = jax.random.normal(k3, (T, N))
    done = jnp.zeros((T, N)).at[3, 1].set(1.0)
    return Transition(obs, action, reward, obs + 0.1, done, jnp.zeros((T, N)).at[5, 0].set(1.0))


SPACES = [
    (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2)),
    (gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
]


@pytest.mark.parametrize("obs_space, act_space", SPACES, ids=["discrete", "continuous"])
def test_contract_shapes_bounds_and_determinism(obs_space, act_space):
    spec = get_agent("ppo")
    assert spec.family == "on_policy" and spec.action_kinds == {"discrete", "continuous"}
    cfg = ppo.Config(num_envs=3, num_steps=8, num_minibatches=2, update_epochs=2, init_log_std=1.0)
    state = ppo.init(jax.random.PRNGKey(0), obs_space, act_space, cfg)
    obs = 3 * jax.random.normal(jax.random.PRNGKey(1), (64, *obs_space.shape))
    act = jax.jit(ppo.act, static_argnums=3)
    a = act(state, obs, jax.random.PRNGKey(2), False)
    assert a.shape[0] == 64 and a.shape[1:] == act_space.shape
    assert act_space.contains(np.asarray(a[0], act_space.dtype))
    if isinstance(act_space, gym.spaces.Box):
        assert np.all(np.asarray(a) >= -2.0) and np.all(np.asarray(a) <= 2.0)
        assert np.any(np.abs(np.asarray(a)) == 2.0)  # σ = e: some samples are clipped
    np.testing.assert_array_equal(a, act(state, obs, jax.random.PRNGKey(2), False))
    rollout = _rollout(state, obs_space, act_space, jax.random.PRNGKey(3))
    update = jax.jit(ppo.update, static_argnums=3)
    s1, m1 = update(state, rollout, jax.random.PRNGKey(4), cfg)
    s2, _ = update(state, rollout, jax.random.PRNGKey(4), cfg)
    jax.tree.map(np.testing.assert_array_equal, s1.params, s2.params)
    assert all(np.isfinite(float(v)) for v in m1.values())
    assert not np.allclose(s1.params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"],
                           state.params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"])


@pytest.mark.parametrize("obs_space, act_space", SPACES, ids=["discrete", "continuous"])
@pytest.mark.parametrize("normalize", [False, True])
def test_update_recomputes_the_behaviour_log_probs(obs_space, act_space, normalize):
    """With α = 0 the policy never moves, so every ratio π/π_old must be 1: the log-probs
    recomputed at the start of `update` are the behaviour policy's (also with the observation
    normaliser, which `update` refreshes only at its end)."""
    cfg = ppo.Config(num_envs=3, num_steps=8, num_minibatches=2, update_epochs=3, learning_rate=0.0,
                     normalize_observations=normalize, init_log_std=1.0)
    state = ppo.init(jax.random.PRNGKey(0), obs_space, act_space, cfg)
    if normalize:  # a non-trivial normaliser
        state = state.replace(obs_rms=state.obs_rms.update(2.0 + 3.0 * jax.random.normal(jax.random.PRNGKey(9), (50, *obs_space.shape))))
    rollout = _rollout(state, obs_space, act_space, jax.random.PRNGKey(3))
    new_state, metrics = jax.jit(ppo.update, static_argnums=3)(state, rollout, jax.random.PRNGKey(4), cfg)
    assert abs(float(metrics["approx_kl"])) < 1e-6 and float(metrics["clip_fraction"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, new_state.params, state.params)
    if normalize:
        expected = state.obs_rms.update(rollout.obs)
        np.testing.assert_allclose(new_state.obs_rms.mean, expected.mean, rtol=1e-6)
    else:
        np.testing.assert_array_equal(new_state.obs_rms.mean, state.obs_rms.mean)


def test_learning_rate_anneals_per_iteration_to_zero():
    cfg = ppo.Config(total_timesteps=4 * 128 * 10)
    schedule = ppo.learning_rate_schedule(cfg)
    steps = cfg.update_epochs * cfg.num_minibatches
    np.testing.assert_allclose([schedule(0), schedule(steps - 1), schedule(steps), schedule(9 * steps), schedule(50 * steps)],
                               [2.5e-4, 2.5e-4, 2.25e-4, 2.5e-5, 0.0], rtol=1e-6)
    assert ppo.learning_rate_schedule(dataclasses.replace(cfg, anneal_lr=False)) == 2.5e-4


def test_separate_actor_and_critic_with_orthogonal_init():
    state = ppo.init(jax.random.PRNGKey(0), *SPACES[0], ppo.Config())
    actor = state.params["actor"]["params"]["MLP_0"]
    critic = state.params["critic"]["params"]["MLP_0"]
    head = np.asarray(actor["Dense_2"]["kernel"])  # 64 x 2, orthogonal columns of norm 0.01
    np.testing.assert_allclose(head.T @ head, 0.01**2 * np.eye(2), atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(critic["Dense_2"]["kernel"]), 1.0, rtol=1e-5)
    for net in (actor, critic):
        hidden = np.asarray(net["Dense_1"]["kernel"])
        np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(64), atol=1e-4)
        assert np.all(np.asarray(net["Dense_0"]["bias"]) == 0.0)
    assert not np.allclose(actor["Dense_1"]["kernel"], critic["Dense_1"]["kernel"])


def test_config_fields_are_documented():
    from heron.config import field_docs

    docs = field_docs(ppo.Config)
    assert set(docs) == {f.name for f in dataclasses.fields(ppo.Config)}


def test_reward_scaling_divides_by_the_std_of_discounted_returns():
    import gymnasium as gym

    from heron.agents import ppo

    cfg = ppo.Config(num_envs=2, num_steps=3, num_minibatches=1, normalize_rewards=True)
    state = ppo.init(jax.random.PRNGKey(0), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), cfg)
    rewards = jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    done = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    scaled, rms, last = ppo.scale_rewards(state, rewards, done, 0.5)
    # env 0: R = 1, 1.5 (episode ends), 1; env 1: R = 2, 3, 3.5
    returns = np.array([1.0, 1.5, 1.0, 2.0, 3.0, 3.5])
    np.testing.assert_allclose(last, [1.0, 3.5])
    expected = ppo.RunningMeanStd.create(()).update(jnp.asarray(returns))
    np.testing.assert_allclose(rms.var, expected.var, rtol=1e-6)
    np.testing.assert_allclose(scaled, rewards / np.sqrt(float(expected.var) + 1e-8), rtol=1e-6)
