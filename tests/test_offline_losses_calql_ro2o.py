"""Cal-QL and RO2O: their losses against hand-computed values, Cal-QL's Monte-Carlo return-to-go
(episode ends, timeouts, cuts, sparse failures) and how it reaches the batches (episode labels:
the offline loop, the offline rows at the switch, online episodes in the replay buffer, across a
checkpoint and an exact resume), the switch rules, and config checks."""

import dataclasses
import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from offline_data import random_dataset

from heron.agents import calql, cql, get_agent, ro2o
from heron.agents.registry import FinetuneRule
from heron.data.dataset import from_episodes, label_episodes, sample_transitions
from heron.errors import HeronError
from heron.loops import finetune, offline
from heron.types import UNLABELLED, LabelledTransition, Transition, with_label

f32 = lambda *x: jnp.asarray(x, jnp.float32)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


SPACES = (gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,), np.float32))


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
                      action=jnp.asarray(rng.uniform(-2, 2, size=(n, 1)), jnp.float32),
                      reward=jnp.asarray(rng.normal(size=n), jnp.float32),
                      next_obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
                      terminated=jnp.zeros(n, jnp.float32), truncated=jnp.zeros(n, jnp.float32))


# =========================================================================== Cal-QL


def test_mc_return_to_go_by_hand():
    r = [1.0, 2.0, 3.0]
    # G_2 = 3, G_1 = 2 + ½·3 = 3.5, G_0 = 1 + ½·3.5 = 2.75 (terminated: no tail)
    close(calql.mc_return_to_go(r, [0, 0, 1], 0.5), [2.75, 3.5, 3.0])
    # a timeout (not terminated) with the default tail 0: the logged rewards only, the same numbers
    close(calql.mc_return_to_go(r, [0, 0, 0], 0.5), [2.75, 3.5, 3.0])
    # 'repeat_last': the tail is r_2 / (1 − γ) = 6, so G_2 = 3 + ½·6 = 6, G_1 = 2 + 3 = 5, G_0 = 1 + 2.5 = 3.5
    close(calql.mc_return_to_go(r, [0, 0, 0], 0.5, "repeat_last"), [3.5, 5.0, 6.0])
    # ... but a terminated episode has no tail whatever the setting
    close(calql.mc_return_to_go(r, [0, 0, 1], 0.5, "repeat_last"), [2.75, 3.5, 3.0])
    # γ = 0: the immediate reward; one-step episode; empty episode
    close(calql.mc_return_to_go(r, [0, 0, 0], 0.0), r)
    close(calql.mc_return_to_go([4.0], [1], 0.9), [4.0])
    assert calql.mc_return_to_go([], [], 0.9).shape == (0,)


def test_mc_return_to_go_sparse_failures():
    # every reward is the failure reward -1: -1 / (1 − 0.9) = -10 at every step (the authors' rule)
    close(calql.mc_return_to_go([-1.0, -1.0, -1.0], [0, 0, 0], 0.9, sparse_failure_reward=-1.0), [-10.0] * 3)
    # a success at the end: the plain discounted sum, G = (-1.9, -1, 0)
    close(calql.mc_return_to_go([-1.0, -1.0, 0.0], [0, 0, 1], 0.9, sparse_failure_reward=-1.0), [-1.9, -1.0, 0.0])
    # without the setting a failed episode is a plain sum too
    close(calql.mc_return_to_go([-1.0, -1.0], [0, 0], 0.9), [-1.9, -1.0])


def test_labels_follow_episode_boundaries_in_a_dataset():
    obs_space, act_space = SPACES
    ep = lambda rewards, term: {"observations": np.zeros((len(rewards) + 1, 3), np.float32),
                                "actions": np.zeros((len(rewards), 1), np.float32),
                                "rewards": np.asarray(rewards, np.float32), "terminations": np.asarray(term, bool),
                                "truncations": np.asarray([0] * (len(rewards) - 1) + [1 - term[-1]], bool)}
    ds = from_episodes([ep([1.0, 1.0], [0, 1]), ep([2.0, 0.0, 4.0], [0, 0, 0])], obs_space, act_space)
    cfg = calql.Config(gamma=0.5)
    labels = label_episodes(ds, lambda r, te, tr: calql.label_episode(r, te, tr, cfg))
    # episode 1 (terminated): 1.5, 1; episode 2 (timeout, tail 0): 2 + ½(0 + ½·4) = 3, 2, 4 — nothing leaks across
    close(labels, [1.5, 1.0, 3.0, 2.0, 4.0])
    # on the device the batches become LabelledTransitions carrying each row's label
    batch = sample_transitions(ds.to_device(labels), jax.random.PRNGKey(0), 64)
    assert isinstance(batch, LabelledTransition)
    close(batch.label, labels[_row_of(ds, batch)])
    assert isinstance(sample_transitions(ds.to_device(), jax.random.PRNGKey(0), 4), Transition)


def _row_of(ds, batch):
    """The dataset row of each sampled transition (its (reward, terminated, truncated) is unique here)."""
    t = ds.transitions()
    keys = list(zip(np.asarray(t.reward).tolist(), np.asarray(t.terminated).tolist(), np.asarray(t.truncated).tolist(),
                    strict=True))
    rows = []
    for r, te, tr in zip(np.asarray(batch.reward).tolist(), np.asarray(batch.terminated).tolist(),
                         np.asarray(batch.truncated).tolist(), strict=True):
        rows.append(keys.index((r, te, tr)))
    return np.asarray(rows)


def test_calibrated_logsumexp_by_hand():
    # One sample each, |A| = 1, as CQL's test: without a bound 3.1669195. With V = 3 the policy samples
    # become max(Q, 3) = 3 before their densities are subtracted: [0 + 0.693147, 3 − 0.5, 3 + 1]
    #   -> log(2 + e^2.5 + e^4) = log 68.780644 = 4.230923; the uniform sample is not bounded.
    args = (f32(0.0), f32(1.0), f32(2.0), f32(0.5), f32(-1.0), 1)
    close(cql.cql_logsumexp(*args, temperature=1.0, lower_bound=f32(3.0)), math.log(2 + math.exp(2.5) + math.exp(4)))
    # a bound below both values changes nothing; −inf (an unlabelled row) is plain CQL
    close(cql.cql_logsumexp(*args, temperature=1.0, lower_bound=f32(-5.0)), 3.1669195)
    close(cql.cql_logsumexp(*args, temperature=1.0, lower_bound=f32(UNLABELLED)), 3.1669195)
    # where the bound is active the penalty stops pushing that Q down; the uniform sample still gets pushed
    grads = jax.grad(lambda q: cql.cql_logsumexp(q[0:1], q[1:2], q[2:3], f32(0.5), f32(-1.0), 1, 1.0,
                                                 lower_bound=f32(1.5)).sum())(f32(0.0, 1.0, 2.0))
    assert float(grads[1]) == 0.0 and float(grads[0]) > 0.0 and float(grads[2]) > 0.0  # Q_next = 1 < 1.5: lifted
    close(jax.grad(lambda v: cql.cql_logsumexp(*args, temperature=1.0, lower_bound=v))(f32(3.0)), 0.0)  # V is data


def test_calql_update_is_cql_with_the_bound():
    cfg = calql.Config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,))
    state = cql.init(jax.random.key(0), *SPACES, cfg)
    batch, key = _batch(), jax.random.key(1)
    step = jax.jit(calql.update, static_argnums=3)
    plain, _ = jax.jit(cql.update, static_argnums=3)(state, batch, key, cfg)
    unbounded, m_inf = step(state, with_label(batch, jnp.full(8, UNLABELLED)), key, cfg)
    # −inf labels: exactly CQL's step (max(Q, −inf) = Q)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(unbounded), strict=True))
    assert float(m_inf["bound_rate"]) == 0.0
    # a bound above every Q lifts all policy-action values: bound_rate 1, a larger gap, another step
    lifted, m_hi = step(state, with_label(batch, jnp.full(8, 100.0)), key, cfg)
    assert float(m_hi["bound_rate"]) == 1.0 and float(m_hi["cql_gap"]) > float(m_inf["cql_gap"]) + 10
    assert not np.array_equal(jax.tree.leaves(lifted.critic_params)[0], jax.tree.leaves(plain.critic_params)[0])
    # a batch without labels (plain Transition) is plain CQL too
    same, m_plain = step(state, batch, key, cfg)
    assert "bound_rate" not in m_plain and np.array_equal(jax.tree.leaves(same)[0], jax.tree.leaves(plain)[0])


def test_calql_registration_rule_and_config():
    spec = get_agent("calql")
    rule = spec.finetune
    assert (rule.keep_offline_data, rule.offline_fraction, rule.updates_per_step, rule.warmup_steps) == (True, 0.5, 1, 0)
    assert spec.label_episode is calql.label_episode and spec.relabel is None
    cfg = spec.config()
    assert cfg.max_target_backup and not cfg.normalize_obs and cfg.cql_alpha == 5.0
    assert finetune.online_config(spec, cfg, rule) == cfg  # the same objective online
    finetune.check_finetunable(spec)  # continues online (labels, not relabelled data)
    with pytest.raises(HeronError, match="timeout_tail"):
        calql.Config(timeout_tail="bootstrap")
    with pytest.raises(HeronError, match="gamma < 1"):
        calql.Config(gamma=1.0, sparse_failure_reward=-1.0)


# --------------------------------------------------------------------------- labels in the loops


def test_offline_loop_trains_calql_on_labelled_batches():
    ds = random_dataset(num_episodes=2)
    spec = get_agent("calql")
    cfg = spec.config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,))
    result = offline.train(spec, cfg, ds, 4, log_every=2)
    assert int(result.state.step) == 4
    # the labels reached update: its bound metric is computed (some policy values sit below V^μ or not)
    logged = []
    offline.train(spec, cfg, ds, 2, log_every=2, on_log=lambda step, row: logged.append(row))
    assert "bound_rate" in logged[0] and np.all(np.isfinite(logged[0]["bound_rate"]))


def _expected_labels(buffer, cfg, cuts):
    """Recompute every episode's return-to-go from the buffer's own rewards and flags; an episode
    ends at a terminated / truncated row or at a cut (a checkpoint's reset, the run's end)."""
    data = jax.device_get(buffer.data)
    size = int(buffer.size)
    ends = set(np.flatnonzero((np.asarray(data.terminated[:size]) + np.asarray(data.truncated[:size])) > 0)) | set(cuts)
    out, start = np.zeros(size, np.float32), 0
    for end in sorted(ends):
        out[start:end + 1] = calql.mc_return_to_go(data.reward[start:end + 1], data.terminated[start:end + 1], cfg.gamma,
                                                   cfg.timeout_tail)
        start = end + 1
    return out


class _Saved:
    def __init__(self):
        self.checkpoints = []

    def on_log(self, step, metrics):
        pass

    def on_eval(self, step, returns):
        pass

    def on_checkpoint(self, step, tree, meta):
        self.checkpoints.append((step, jax.device_get(tree), dict(meta)))


def test_online_episodes_are_labelled_when_they_end_and_resume_exactly():
    """Offline rows get their labels at the switch; each online episode's rows when it ends (200-step
    Pendulum timeouts), when a checkpoint's reset cuts it (step 300), or at the run's end (step 450);
    a run resumed from the checkpoint ends with the same buffer and agent."""
    ds = random_dataset(num_episodes=2)
    spec = get_agent("calql")
    cfg = spec.config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,))
    rule = FinetuneRule(keep_offline_data=True, warmup_steps=440, offline_fraction=0.5)  # few updates: a fast test
    phase = finetune.OnlinePhase(env_id="Pendulum-v1", online_steps=450, eval_episodes=0, log_every=50,
                                 checkpoint_every=300)
    loop = finetune.make_loop(spec, cfg, rule, phase, ds.num_transitions)
    try:
        assert loop.labelled
        agent = offline.seed_slice(offline.init_offline(0, 1, spec, cfg, ds.observation_space, ds.action_space,
                                                        offline.dataset_stats(ds)), 0)
        start = finetune.switch_state(loop, agent, ds, rule, seed=0)
        n_off = ds.num_transitions
        offline_labels = np.asarray(start["tree"]["buffer"].data.label[:n_off])
        close(offline_labels, label_episodes(ds, lambda r, te, tr: calql.label_episode(r, te, tr, cfg)))
        assert np.all(np.asarray(start["tree"]["buffer"].data.label[n_off:]) == UNLABELLED)
        saved = _Saved()
        final = loop.run(start, saved)
        buffer = final["tree"]["buffer"]
        labels = np.asarray(buffer.data.label[:int(buffer.size)])
        assert np.all(np.isfinite(labels)), "every row is labelled once its episode ended or was cut"
        cuts = [n_off - 1, n_off + 299, n_off + 449]
        close(labels, _expected_labels(buffer, cfg, cuts), tol=1e-4)
        assert final["meta"]["updates"] == 11
        # resume from the checkpoint at step 300: the same buffer (labels included) and agent
        step, tree, meta = saved.checkpoints[0]
        assert step == 300
        resumed = loop.run({"tree": jax.tree.map(jnp.asarray, tree), "meta": meta})
        for a, b in zip(jax.tree.leaves(final["tree"]), jax.tree.leaves(resumed["tree"]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    finally:
        loop.close()


def test_a_running_episode_is_unlabelled_until_it_ends():
    from heron.data.replay import replay_add, replay_init, replay_set_labels

    buffer = replay_init(4, (1,), jnp.float32, (1,), jnp.float32, labelled=True)
    assert np.all(np.asarray(buffer.data.label) == UNLABELLED)
    rows = with_label(Transition(jnp.zeros((3, 1)), jnp.zeros((3, 1)), jnp.ones(3), jnp.zeros((3, 1)), jnp.zeros(3),
                                 jnp.zeros(3)), jnp.full(3, UNLABELLED))
    buffer = replay_add(buffer, rows)
    # rows 1 and 2 labelled; padding rows (index = capacity) are dropped
    buffer = replay_set_labels(buffer, jnp.asarray([1, 2, 4, 4]), f32(5.0, 6.0, 9.0, 9.0))
    close(buffer.data.label, [UNLABELLED, 5.0, 6.0, UNLABELLED])


# =========================================================================== RO2O


def test_ro2o_target_is_the_ensemble_minimum_minus_entropy():
    # y = r + γ (1 − d)(min_i Q̄_i − α log π): 1 + 0.9 (3 − 0.2·0.5) = 3.61; terminal: r only
    y = ro2o.soft_q_target(f32(1.0, 2.0), f32(0.0, 1.0), jnp.array([[3.0, 9.0], [5.0, 9.0], [4.0, 9.0]]),
                           f32(0.5, 0.5), 0.2, 0.9)
    close(y, [3.61, 2.0])


def test_ood_pseudo_target_and_penalty_by_hand():
    q = jnp.array([[1.0], [3.0]])  # two critics, one perturbed state-action: unbiased std √2
    close(ro2o.ood_pseudo_target(q, 0.5), [[1.0 - 0.5 * math.sqrt(2)], [3.0 - 0.5 * math.sqrt(2)]])
    # L = mean (Q̂ − Q)² = (λ u)² = (0.5 √2)² = 0.5; dL/dQ_i = 2 λ u / 2 = 0.7071 > 0: descent lowers both
    close(ro2o.ood_loss(q, 0.5), 0.5)
    close(jax.grad(ro2o.ood_loss)(q, 0.5), [[0.5 * math.sqrt(2)], [0.5 * math.sqrt(2)]])
    # an ensemble that agrees is not penalised
    close(ro2o.ood_loss(jnp.array([[2.0], [2.0]]), 1.0), 0.0)


def test_value_smoothness_loss_by_hand():
    # two critics, one state, two perturbations; Δ = Q(s̃_k, a) − Q(s, a): critic 0 (0.5, −1), critic 1 (0, 1)
    q = jnp.array([[1.0], [2.0]])
    q_pert = jnp.array([[[1.5, 0.0]], [[2.0, 3.0]]])
    # τ = 0.2: critic 0 (0.8·0.25, 0.2·1) = (0.2, 0.2), critic 1 (0, 0.8) -> means (0.1, 0.5) -> worst 0.5
    close(ro2o.value_smoothness_loss(q, q_pert, 0.2), 0.5)
    # symmetric τ = 0.5: means (0.5·(0.25 + 0)/2, 0.5·(1 + 1)/2) = (0.0625, 0.5)
    close(ro2o.value_smoothness_loss(q, q_pert, 0.5), 0.5)
    # the gradient reaches the worst perturbation only (and Q(s, a))
    g = jax.grad(lambda p: ro2o.value_smoothness_loss(q, p, 0.2))(q_pert)
    close(g[:, 0, 0], [0.0, 0.0])
    close(g[:, 0, 1], [0.5 * 0.2 * 2 * -1.0, 0.5 * 0.8 * 2 * 1.0])


def test_policy_smoothness_is_the_worst_jeffreys_divergence():
    # N(0, 1) vs N(1, 2²): KL both ways 0.443147 + 1.306853 = 1.75; identical Gaussians: 0
    close(ro2o.gaussian_jeffreys(f32(0.0), f32(0.0), f32(1.0), f32(math.log(2.0))), 0.0 + 1.75)
    close(ro2o.gaussian_jeffreys(f32(0.3, -0.2), f32(0.1, 0.4), f32(0.3, -0.2), f32(0.1, 0.4)), 0.0)
    mean, log_std = jnp.zeros((1, 1)), jnp.zeros((1, 1))
    mean_p = jnp.array([[[0.0], [1.0], [0.5]]])  # three perturbed states: the second is the worst
    log_std_p = jnp.array([[[0.0], [math.log(2.0)], [0.0]]])
    close(ro2o.policy_smoothness_loss(mean, log_std, mean_p, log_std_p), 1.75)


def test_perturbations_and_uncertainty_schedule():
    obs = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    s = ro2o.perturbed_states(jax.random.key(0), obs, 0.01, 5)
    assert s.shape == (2, 5, 3) and float(jnp.max(jnp.abs(s - obs[:, None]))) <= 0.01
    close(s[0] - obs[0], s[1] - obs[1])  # the same offsets for every state (the authors' sampling)
    # λ_t = max(1 − 5e-7 t, 0.1)
    close(ro2o.ood_uncertainty_weight(0, 1.0, 0.1, 5e-7), 1.0)
    close(ro2o.ood_uncertainty_weight(1_000_000, 1.0, 0.1, 5e-7), 0.5)
    close(ro2o.ood_uncertainty_weight(10_000_000, 1.0, 0.1, 5e-7), 0.1)


def test_ro2o_update_rule_and_online_config():
    spec = get_agent("ro2o")
    cfg = spec.config(batch_size=8, actor_hidden=(16,), critic_hidden=(16,), num_critics=3, num_perturbations=4,
                      ood_uncertainty_decay=0.1)
    state = spec.init(jax.random.key(0), *SPACES, cfg)
    step = jax.jit(spec.update, static_argnums=3)
    state, m0 = step(state, _batch(), jax.random.key(1), cfg)
    state, m1 = step(state, _batch(seed=1), jax.random.key(2), cfg)
    close([m0["ood_uncertainty"], m1["ood_uncertainty"]], [1.0, 0.9])  # the schedule reads the update counter
    assert all(np.isfinite(float(v)) for v in m1.values())
    assert float(m1["policy_smooth_loss"]) >= 0.0 and float(m1["q_smooth_loss"]) >= 0.0 and float(m1["ood_loss"]) > 0
    # online: the same losses with λ at its floor; the rule: no offline data, 2500 policy steps, UTD 1
    rule = spec.finetune
    assert (rule.keep_offline_data, rule.warmup_steps, rule.updates_per_step, rule.warmup_random) == (False, 2500, 1, False)
    online = finetune.online_config(spec, cfg, rule)
    assert online == dataclasses.replace(cfg, ood_uncertainty=0.1, ood_uncertainty_decay=0.0)
    _, m = step(state, _batch(), jax.random.key(3), online)
    close(m["ood_uncertainty"], 0.1)
    with pytest.raises(HeronError, match="num_critics"):
        spec.config(num_critics=1)
    with pytest.raises(HeronError, match="ood_uncertainty_min"):
        spec.config(ood_uncertainty=0.05)
