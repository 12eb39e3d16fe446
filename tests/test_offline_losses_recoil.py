"""ReCOIL's losses, its expert relabelling and config checks, against hand-computed values."""

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import get_agent, recoil, xql
from heron.data.dataset import from_episodes
from heron.data.transforms import mix
from heron.errors import HeronError
from heron.types import Transition

f32 = lambda *x: jnp.asarray(x, jnp.float32)


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- losses


def test_q_target_values():
    # r̄ = 2, γ = 0.5: non-terminal y = −2 + 0.5 V(s'); terminal y = −2 + 0.5 · (−2 / 0.5) = −4
    close(recoil.recoil_q_target(f32(0.0, 0.0, 1.0), f32(10.0, -4.0, 123.0), 0.5, 2.0), [3.0, -4.0, -4.0])
    # the authors' numbers (γ = 0.99): terminal value −2 + 0.99 · (−200) = −200
    close(recoil.recoil_q_target(f32(1.0), f32(0.0), 0.99, 2.0), [-200.0], tol=1e-4)


def test_masked_mean():
    close(recoil.masked_mean(f32(1.0, 2.0, 4.0), f32(1.0, 0.0, 1.0)), 2.5)
    close(recoil.masked_mean(f32(1.0, 2.0), f32(0.0, 0.0)), 0.0)  # no expert rows: the term vanishes


def test_critic_loss_values():
    # two critics, three samples, the first an expert one; Q_E target 10, Bellman targets y = (1, 2, 3)
    q = jnp.array([[4.0, 2.0, 0.0], [10.0, 1.0, 5.0]])
    y, expert = f32(1.0, 2.0, 3.0), f32(1.0, 0.0, 0.0)
    # critic 0: expert ½(4 − 10)² = 18; Bellman ½(9, 0, 9) mean 3 -> 21
    # critic 1: expert 0;              Bellman ½(81, 1, 4) mean 86/6 -> 14.333…; sum 35.333…
    close(recoil.recoil_critic_loss(q, y, expert, 10.0), 21.0 + 86.0 / 6.0, tol=1e-5)
    # two expert rows average the pull-up term: critic 0 ½((4 − 10)² + (2 − 10)²)/2 = 25
    close(recoil.recoil_critic_loss(q[:1], y, f32(1.0, 1.0, 0.0), 10.0), 25.0 + 3.0, tol=1e-5)


def test_critic_loss_gradients_and_stationary_point():
    # no gradient through the Bellman target
    q, y, expert = jnp.array([[1.0, 2.0]]), f32(0.0, 5.0), f32(1.0, 0.0)
    close(jax.grad(lambda t: recoil.recoil_critic_loss(q, t, expert, 7.0))(y), [0.0, 0.0])
    # an expert row in a batch of B rows: dL/dQ = (Q − Q_E) + (Q − y)/B; zero at Q = (B Q_E + y)/(B + 1)
    b, q_e, y0 = 2, 200.0, -2.0
    q_star = (b * q_e + y0) / (b + 1)
    g = jax.grad(lambda q: recoil.recoil_critic_loss(q, f32(y0, 0.0), expert, q_e))(jnp.array([[q_star, 0.0]]))
    close(g, [[0.0, 0.0]], tol=1e-4)
    # a non-expert row only regresses onto its target: gradient (Q − y)/B
    close(jax.grad(lambda q: recoil.recoil_critic_loss(q, f32(q_e, 3.0), expert, q_e))(jnp.array([[q_e, 1.0]])),
          [[0.0, (1.0 - 3.0) / 2]], tol=1e-5)


# --------------------------------------------------------------------------- expert data


def _dataset(lengths, name="d"):
    obs_space, act_space = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    rng = np.random.default_rng(0)
    eps = [dict(observations=rng.uniform(-1, 1, (t + 1, 2)), actions=rng.uniform(-1, 1, (t, 1)),
                rewards=rng.normal(size=t), terminations=np.zeros(t, bool),
                truncations=np.arange(t) == t - 1) for t in lengths]
    return from_episodes(eps, obs_space, act_space, name=name)


def test_relabel_last_episodes_flags_and_weights():
    ds = _dataset([3, 2, 5])  # 10 transitions; the last episode (5 transitions) is expert
    out = recoil.relabel(ds, recoil.Config(expert_episodes=1, beta=0.4))
    close(out.rewards, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    # per-transition weights: expert 0.4 / 5 = 0.08, others 0.6 / 5 = 0.12 -> expert mass 0.4
    close(out.episode_weights, [0.12, 0.12, 0.08])
    w = out.transition_weights()
    close(w[out.rewards > 0.5].sum() / w.sum(), 0.4)
    assert out.num_transitions == ds.num_transitions and np.array_equal(out.actions, ds.actions)


def test_relabel_finds_the_expert_source_of_a_mix():
    replay, expert = _dataset([4, 4], "replay"), _dataset([2], "expert")
    out = recoil.relabel(mix([(replay, 1.0), (expert, 1.0), (replay, 0.5)]), recoil.Config())
    close(out.rewards, [0] * 8 + [1] * 2 + [0] * 4)
    close(out.episode_weights, [0.5 / 12] * 2 + [0.5 / 2] + [0.5 / 12])
    named = recoil.relabel(mix([(replay, 1.0), (expert.with_metadata(name="demos"), 1.0)]),
                           recoil.Config(expert_source="demos"))
    close(named.rewards, [0] * 8 + [1] * 2)


def test_relabel_says_how_to_name_the_demonstrations():
    with pytest.raises(HeronError, match="heron data mix"):
        recoil.relabel(_dataset([3, 3]), recoil.Config())
    with pytest.raises(HeronError, match="no other data"):
        recoil.relabel(_dataset([3, 3]), recoil.Config(expert_episodes=2))
    with pytest.raises(HeronError, match="other .suboptimal. data"):
        recoil.relabel(mix([(_dataset([2], "expert"), 1.0)]), recoil.Config())


def test_configs_reject_unusable_values():
    for bad, match in [(dict(beta=0.0), "beta"), (dict(beta=1.0), "beta"), (dict(gamma=1.0), "gamma"),
                       (dict(temperature=0.0), "temperature"), (dict(expert_reward=-1.0), "expert_reward"),
                       (dict(expert_episodes=-1), "expert_episodes"), (dict(policy="beta"), "policy"),
                       (dict(expert_source=""), "expert_source")]:
        with pytest.raises(HeronError, match=match) as err:
            recoil.Config(**bad)
        assert "\n" not in str(err.value) and str(err.value).startswith("recoil:")
    with pytest.raises(HeronError, match="recoil"):
        recoil.init(jax.random.key(0), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), recoil.Config())


def test_registered_with_relabel_and_documented_fields():
    spec = get_agent("recoil")
    assert spec.family == "offline" and spec.relabel is recoil.relabel
    names = {f.name for f in dataclasses.fields(recoil.Config)}
    assert "normalize_reward" not in names  # rewards are never used, so never a setting


# --------------------------------------------------------------------------- one update


def test_update_uses_the_flag_not_the_reward_and_moves_q_toward_targets():
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)
    cfg = recoil.Config(batch_size=8, actor_hidden=(8,), critic_hidden=(8,), value_hidden=(8,), tau=0.5,
                        critic_lr=1e-2)
    state = recoil.init(jax.random.key(0), obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    flag = np.array([1, 1, 0, 0, 0, 0, 0, 0], np.float32)
    batch = Transition(obs=rng.uniform(-1, 1, (8, 3)).astype(np.float32),
                       action=rng.uniform(-2, 2, (8, 1)).astype(np.float32), reward=flag,
                       next_obs=rng.uniform(-1, 1, (8, 3)).astype(np.float32),
                       terminated=np.zeros(8, np.float32), truncated=np.zeros(8, np.float32))
    step = jax.jit(lambda s, b, k: recoil.update(s, b, k, cfg))
    new, metrics = step(state, batch, jax.random.key(1))
    close(metrics["expert_fraction"], 0.25)
    expected = jax.tree.map(lambda t, o: 0.5 * o + 0.5 * t, state.target_critic_params, new.critic_params)
    for a, b in zip(jax.tree.leaves(new.target_critic_params), jax.tree.leaves(expected)):
        close(a, b)
    assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    # the Gumbel value loss is XQL's
    q_bar = jnp.min(state.critic.apply(state.target_critic_params, batch.obs, batch.action / 2.0), axis=0)
    v = state.value.apply(state.value_params, batch.obs)
    close(metrics["value_loss"], xql.gumbel_rescale_loss(q_bar - v, cfg.temperature, cfg.max_clip), tol=1e-5)
    # repeated steps: expert Q rises toward r̄/(1 − γ) = 200 (from ~0), the others stay below
    s = new
    for i in range(200):
        s, metrics = step(s, batch, jax.random.key(2 + i))
    assert float(metrics["q_expert"]) > max(50.0, float(metrics["q_other"]) + 10.0), metrics
