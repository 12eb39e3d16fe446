"""Data corruption of states, actions, rewards and dynamics, random and adversarial.

Yang, Rui et al., "Towards Robust Offline Reinforcement Learning under Diverse Data Corruption"
(RIQL, ICLR 2024), checked against the authors' `attack.py` (github.com/YangRui2015/RIQL):

- a fraction ε (`ratio`, the code's `corruption_rate`, default 0.3) of the transitions is
  attacked; heron picks exactly round(ε·N) of them without replacement (the code draws each
  transition independently with probability ε, so its count is only ε·N in expectation);
- the scale (`scale`, the code's `corruption_range`, default 1.0) bounds the noise in units of
  each dimension's standard deviation over the dataset;
- random states / actions / next states (dynamics):  x̂ = x + λ ⊙ std(x),  λ ~ U[−scale, scale]^d;
- random rewards:  r̂ ~ U[−30·scale, 30·scale]  (30 = `reward_bound`, the code's constant);
- adversarial rewards:  r̂ = −scale · r;
- adversarial states / actions / next states: x̂ = x + δ ⊙ std(x) with δ ∈ [−scale, scale]^d chosen
  to *minimise* a Q-function learned on the clean data: Q(ŝ, a) for states, Q(s, â) for actions,
  and the value of the corrupted next state for dynamics (RIQL: Q(ŝ', π(ŝ')) with a pretrained
  EDAC actor; here V(ŝ') = E_{a~β} Q(ŝ', a), learned with Q by fitted evaluation of the data's
  behaviour policy). The attack starts at a random δ ~ U[−scale, scale]^d and takes `attack_steps`
  = 100 projected steps of size 0.01·scale. The code re-creates its Adam optimiser at every step,
  so each step is lr·g/(|g|+ε) ≈ lr·sign(g): heron writes that down as projected sign-gradient
  descent, δ ← clip(δ − 0.01·scale·sign(∇_δ Q), −scale, scale).

RIQL corrupts `observations` and `next_observations` as separate arrays. heron's flat layout shares
o_{t+1} between transition t and t+1, so a corrupted state (or next state) in the middle of an
episode splits it there (see `rebuild_from_transitions`): every (s, a, r, s', done) tuple is then
exactly the benchmark's, and the number of splits is recorded.

Discrete actions (outside RIQL, which is continuous-control only): random = a uniformly random
action, adversarial = argmin_a Q(s, a); `scale` does not apply to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from heron.data.dataset import EpisodeDataset
from heron.data.transforms._common import (
    as_key,
    batched_apply,
    check_fraction,
    check_positive,
    fit_params,
    mlp,
    rebuild_from_transitions,
    seed_of,
    standardizer,
    step,
)
from heron.errors import HeronError

PAPER = "Yang et al. 2023, Towards Robust Offline RL under Diverse Data Corruption (RIQL)"
TARGETS = ("obs", "actions", "rewards", "dynamics")
MODES = ("random", "adversarial")


# -------------------------------------------------------------------- the attacker's Q-function
@dataclasses.dataclass(frozen=True)
class QModel:
    """Q(s, a) and V(s) = E_{a~β} Q(s, a) of the data's behaviour policy, on raw arrays (jittable).

    `q(obs, action) -> [B]`, `v(obs) -> [B]`; `q_all(obs) -> [B, n]` for discrete actions.
    Values are in units of the reward's standard deviation (only their ordering matters to an attack).
    """

    q: Callable
    v: Callable
    q_all: Callable | None
    info: dict


def fit_q_function(ds: EpisodeDataset, seed=0, *, hidden=(256, 256), steps: int = 2000, batch_size: int = 256,
                   lr: float = 3e-4, gamma: float = 0.99) -> QModel:
    """Fitted evaluation of the behaviour policy on `ds` (expectile-0.5 IQL, i.e. SARSA in expectation).

    L_Q = (Q(s,a) − r/σ_r − γ(1−d)·sg[V(s')])²,   L_V = (V(s) − sg[Q(s,a)])²,
    inputs standardised by the dataset's mean/std. Only episodes with known actions are used.
    """
    steps = check_positive("q_steps", steps, integer=True)
    key = as_key(seed)
    known = _known_transitions(ds)
    if not known.any():
        raise HeronError(f"dataset {ds.name!r} has no episode with actions: an adversarial attack needs a Q-function "
                         "learned on labelled data (label them first with `heron data label-actions`)")
    tr = ds.transitions()
    obs, nxt = tr.obs[known].reshape(known.sum(), -1), tr.next_obs[known].reshape(known.sum(), -1)
    o_mu, o_sd = standardizer(np.concatenate([obs, nxt]))
    r_sd = float(max(np.std(tr.reward[known]), 1e-6))
    discrete = ds.discrete_actions
    if discrete:
        n_act = int(ds.action_space.n)
        act = tr.action[known].astype(np.int32) - int(ds.action_space.start)
        a_mu, a_sd = np.zeros(1, np.float32), np.ones(1, np.float32)
    else:
        act = tr.action[known].reshape(known.sum(), -1).astype(np.float32)
        a_mu, a_sd = standardizer(act)
    q_net = mlp(hidden, n_act if discrete else 1)
    v_net = mlp(hidden, 1)
    k_q, k_v, k_fit = jax.random.split(key, 3)
    a_dim = 1 if discrete else act.shape[1]
    params = {"q": q_net.init(k_q, jnp.zeros((1, obs.shape[1] + (0 if discrete else a_dim)))),
              "v": v_net.init(k_v, jnp.zeros((1, obs.shape[1])))}

    def norm_o(o):
        return (o.reshape(o.shape[0], -1) - o_mu) / o_sd

    def q_of(p, o, a):
        if discrete:
            return jnp.take_along_axis(q_net.apply(p["q"], norm_o(o)), a[:, None].astype(jnp.int32), axis=1)[:, 0]
        return q_net.apply(p["q"], jnp.concatenate([norm_o(o), (a.reshape(a.shape[0], -1) - a_mu) / a_sd], -1))[:, 0]

    def v_of(p, o):
        return v_net.apply(p["v"], norm_o(o))[:, 0]

    def loss(p, b):
        target = b["r"] / r_sd + gamma * (1.0 - b["d"]) * jax.lax.stop_gradient(v_of(p, b["o2"]))
        q = q_of(p, b["o"], b["a"])
        return jnp.mean((q - target) ** 2) + jnp.mean((v_of(p, b["o"]) - jax.lax.stop_gradient(q)) ** 2)

    data = {"o": jnp.asarray(obs), "a": jnp.asarray(act), "r": jnp.asarray(tr.reward[known], jnp.float32),
            "o2": jnp.asarray(nxt), "d": jnp.asarray(tr.terminated[known], jnp.float32)}
    params, losses = fit_params(k_fit, params, loss, data, steps=steps, batch_size=batch_size, lr=lr)
    start = int(ds.action_space.start) if discrete else 0
    q_all = (lambda o: q_net.apply(params["q"], norm_o(o))) if discrete else None
    return QModel(q=lambda o, a: q_of(params, o, a - start if discrete else a), v=lambda o: v_of(params, o),
                  q_all=q_all, info={"steps": steps, "hidden": list(hidden), "gamma": gamma, "batch_size": batch_size,
                                     "lr": lr, "final_loss": float(np.mean(losses[-max(1, steps // 20):]))})


# -------------------------------------------------------------------- attacks
def sign_pgd(objective: Callable, delta0: jax.Array, scale: float, steps: int) -> jax.Array:
    """δ ← clip(δ − 0.01·scale·sign(∇_δ Σ objective(δ)), −scale, scale), `steps` times (RIQL's attack)."""
    grad = jax.grad(lambda d: jnp.sum(objective(d)))
    step_size = 0.01 * scale

    def body(d, _):
        return jnp.clip(d - step_size * jnp.sign(grad(d)), -scale, scale), None

    delta, _ = jax.lax.scan(body, delta0, None, length=steps)
    return delta


def _known_transitions(ds: EpisodeDataset) -> np.ndarray:
    known = np.ones(ds.num_episodes, bool) if ds.action_known is None else np.asarray(ds.action_known, bool)
    return np.repeat(known, ds.episode_lengths)


def corrupt(ds: EpisodeDataset, target: str, mode: str = "random", ratio: float = 0.3, scale: float = 1.0, seed=0, *,
            reward_bound: float = 30.0, attack_steps: int = 100, q_model: QModel | None = None,
            q_steps: int = 2000, q_hidden=(256, 256)) -> EpisodeDataset:
    """Corrupt round(ratio·N) transitions' `target` ("obs" | "actions" | "rewards" | "dynamics").

    `mode` "random" or "adversarial" per RIQL (module docstring). An adversarial attack on states,
    actions or dynamics uses `q_model`, or fits one on `ds` (`q_steps` Adam steps). Provenance
    records the parameters, the seed, the corrupted count, the splits, the measured noise (in std
    units) and, when a Q-function is at hand, its mean on the attacked transitions before and after.
    """
    if target not in TARGETS:
        raise HeronError(f"unknown corruption target {target!r}: use one of {', '.join(TARGETS)}")
    if mode not in MODES:
        raise HeronError(f"unknown corruption mode {mode!r}: use 'random' or 'adversarial'")
    ratio = check_fraction("ratio ε", ratio)
    scale = check_positive("scale", scale, allow_zero=True)
    attack_steps = check_positive("attack_steps", attack_steps, integer=True)
    if target in ("obs", "dynamics") and not np.issubdtype(ds.observations.dtype, np.floating):
        raise HeronError(f"dataset {ds.name!r} has integer observations ({ds.observations.dtype}); "
                         "state/dynamics corruption adds real-valued noise and needs float observations")
    key = as_key(seed)
    k_pick, k_noise, k_q = jax.random.split(key, 3)
    tr = ds.transitions()
    n = ds.num_transitions
    known = _known_transitions(ds)
    # actions (and Q(s, a) for an adversarial state attack) exist only in labelled episodes
    needs_actions = target == "actions" or (mode == "adversarial" and target == "obs")
    candidates = np.flatnonzero(known) if needs_actions else np.arange(n)
    k = round(ratio * len(candidates))
    idx = np.sort(np.asarray(jax.random.choice(k_pick, len(candidates), (k,), replace=False))) if k else \
        np.zeros(0, np.int64)
    idx = candidates[idx]
    mask = np.zeros(n, bool)
    mask[idx] = True

    obs, act, rew, nxt = (np.array(tr.obs), np.array(tr.action), np.array(tr.reward, np.float32),
                          np.array(tr.next_obs))
    info: dict = {}
    if mode == "adversarial" and target != "rewards" and q_model is None and k:
        q_model = fit_q_function(ds, k_q, hidden=q_hidden, steps=q_steps)
        info["q_function"] = {"fitted_on": "this dataset (clean)", **q_model.info}
    elif q_model is not None:
        info["q_function"] = {"given": True, **q_model.info}

    if target == "rewards":
        before = rew[idx].copy()
        if mode == "random":
            rew[idx] = np.asarray(jax.random.uniform(k_noise, (k,), minval=-reward_bound * scale,
                                                     maxval=reward_bound * scale))
        else:
            rew[idx] = -scale * before
        info.update(reward_bound=reward_bound if mode == "random" else None,
                    reward_mean_clean=float(before.mean()) if k else None,
                    reward_mean_corrupted=float(rew[idx].mean()) if k else None)
    elif target == "actions" and ds.discrete_actions:
        space = ds.action_space
        if mode == "random":
            new = np.asarray(jax.random.randint(k_noise, (k,), space.start, space.start + space.n), act.dtype)
        else:
            new = (np.asarray(batched_apply(q_model.q_all, (obs[idx],))).argmin(-1) + space.start).astype(act.dtype) \
                if k else np.zeros(0, act.dtype)
        info["actions_changed"] = int(np.sum(new != act[idx]))
        if q_model is not None and k:
            info["q_mean_clean"] = float(np.mean(batched_apply(q_model.q, (obs[idx], act[idx]))))
            info["q_mean_corrupted"] = float(np.mean(batched_apply(q_model.q, (obs[idx], new))))
        act[idx] = new
    else:
        arr = {"obs": obs, "actions": act, "dynamics": nxt}[target]
        # std over the dataset's array being corrupted (RIQL: np.std(dataset[tag], axis=0)); labelled rows for actions
        std = np.std(arr[known] if target == "actions" else arr, axis=0).astype(np.float32)
        x = arr[idx].astype(np.float32)
        delta = np.asarray(jax.random.uniform(k_noise, x.shape, minval=-scale, maxval=scale), np.float32)
        objective = None
        if q_model is not None and k:
            o_c, a_c, n_c = jnp.asarray(obs[idx]), jnp.asarray(act[idx]), jnp.asarray(nxt[idx])
            std_j = jnp.asarray(std)
            objective = {"obs": lambda d: q_model.q(o_c + d * std_j, a_c),
                         "actions": lambda d: q_model.q(o_c, a_c + d * std_j),
                         "dynamics": lambda d: q_model.v(n_c + d * std_j)}[target]
            info["q_mean_clean"] = float(jnp.mean(objective(jnp.zeros_like(delta))))
            if mode == "adversarial":
                delta = np.asarray(jax.jit(lambda d0: sign_pgd(objective, d0, scale, attack_steps))(jnp.asarray(delta)))
            info["q_mean_corrupted"] = float(jnp.mean(objective(jnp.asarray(delta))))
        arr[idx] = (x + delta * std).astype(arr.dtype)
        info.update(noise_mean_abs_std_units=float(np.abs(delta).mean()) if k else 0.0,
                    noise_max_abs_std_units=float(np.abs(delta).max()) if k else 0.0,
                    attack_steps=attack_steps if mode == "adversarial" else None)

    # a changed o_t breaks continuity with t-1's next state; a changed s' with t+1's state
    breaks = np.zeros(n, bool)
    if target == "obs":
        breaks |= mask
    if target == "dynamics":
        breaks[1:] |= mask[:-1]
    out, splits = rebuild_from_transitions(ds, obs, act, rew, nxt, breaks)
    return out.with_step(step("corrupt", paper=PAPER, target=target, mode=mode, ratio=ratio, scale=scale,
                              seed=seed_of(seed), corrupted_transitions=k, candidate_transitions=len(candidates),
                              num_transitions=n, episodes_split=splits, **info))
