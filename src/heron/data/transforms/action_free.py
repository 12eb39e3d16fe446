"""Action-free episodes: hide actions, fit an inverse dynamics model, proxy-label.

Zheng, Henaff, Amos, Grover, "Semi-Supervised Offline Reinforcement Learning with Action-Free
Trajectories" (SS-ORL, ICML 2023). The pipeline: labelled trajectories (s, a, r) and unlabelled
ones (s, r); an inverse dynamics model (IDM) φ(a_t | s_{t−k}, …, s_t, s_{t+1}, …, s_{t+1+k}) is
trained on the labelled data by maximum likelihood — a Gaussian with diagonal covariance for
continuous actions, a softmax (categorical) for discrete ones — and proxy-labels the unlabelled
trajectories; any offline RL algorithm then trains on both. heron's window is `window` = k states
on each side of the (s_t, s_{t+1}) pair (k = 0: the pair alone), padded at episode ends by
repeating the first/last state. Proxy labels are the Gaussian's mean (clipped to the action
bounds) or the most likely discrete action.

The labelling error is measured on held-out labelled episodes (MSE for Box actions, accuracy for
Discrete), next to the error of a constant predictor (mean action / majority class) so that the
number can be judged; and against the true actions when the caller still has them (`hide_actions
(..., label=True)` hides and labels in one call).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from heron.data.dataset import EpisodeDataset
from heron.data.transforms._common import (
    as_key,
    batched_apply,
    check_fraction,
    check_positive,
    derive,
    fit_params,
    mlp,
    seed_of,
    standardizer,
    step,
)
from heron.errors import HeronError

PAPER = "Zheng et al. 2023, Semi-Supervised Offline RL with Action-Free Trajectories (SS-ORL)"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass(frozen=True)
class IDMConfig:
    """Inverse dynamics model φ(a_t | window of states) and its (small, CPU-sized) training budget."""

    window: int = 0
    """k: states on each side of (s_t, s_{t+1}) in the input (SS-ORL's window; 0 = the pair alone)."""
    hidden: tuple[int, ...] = (256, 256)
    """MLP hidden layer widths."""
    steps: int = 3000
    """Adam steps."""
    batch_size: int = 256
    lr: float = 1e-3
    holdout: float = 0.1
    """Fraction of the labelled episodes held out to measure the labelling error (at least one when ≥ 2)."""


def _known(ds: EpisodeDataset) -> np.ndarray:
    return np.ones(ds.num_episodes, bool) if ds.action_known is None else np.asarray(ds.action_known, bool)


def idm_inputs(ds: EpisodeDataset, window: int) -> np.ndarray:
    """[N, (2k+2)·obs_dim] the states s_{t−k} … s_{t+1+k} of every transition, edge-padded per episode."""
    e_of_t = ds.episode_of_transition()
    row_t = np.arange(ds.num_transitions) + e_of_t  # row of s_t
    lo = ds.episode_starts[:-1][e_of_t] + e_of_t  # first row of t's episode
    hi = ds.episode_starts[1:][e_of_t] + e_of_t  # last row (final observation)
    rows = np.clip(row_t[:, None] + np.arange(-window, window + 2)[None, :], lo[:, None], hi[:, None])
    flat = ds.observations.reshape(len(ds.observations), -1).astype(np.float32)
    return flat[rows].reshape(ds.num_transitions, -1)


@dataclasses.dataclass(frozen=True)
class InverseDynamics:
    """A trained IDM: `predict(inputs) -> actions` (mean / argmax), plus what it was trained with."""

    params: dict
    config: IDMConfig
    discrete: bool
    in_mu: np.ndarray
    in_sd: np.ndarray
    a_mu: np.ndarray
    a_sd: np.ndarray
    action_space: gym.Space
    final_loss: float

    def _net(self):
        out = int(self.action_space.n) if self.discrete else 2 * int(np.prod(self.action_space.shape))
        return mlp(self.config.hidden, out)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        net = self._net()
        out = batched_apply(jax.jit(lambda x: net.apply(self.params, (x - self.in_mu) / self.in_sd)), (inputs,))
        space = self.action_space
        if self.discrete:
            return (out.argmax(-1) + int(space.start)).astype(np.int32)
        d = out.shape[1] // 2
        mean = out[:, :d] * self.a_sd + self.a_mu
        mean = np.clip(mean, space.low.reshape(-1), space.high.reshape(-1))  # no-op for unbounded spaces
        return mean.reshape(len(inputs), *space.shape).astype(np.float32)


def fit_inverse_dynamics(inputs: np.ndarray, actions: np.ndarray, action_space: gym.Space, key,
                         config: IDMConfig = IDMConfig()) -> InverseDynamics:
    """Maximum likelihood: Gaussian NLL (diagonal, standardised actions) or softmax cross-entropy."""
    discrete = isinstance(action_space, gym.spaces.Discrete)
    in_mu, in_sd = standardizer(inputs)
    if discrete:
        y = np.asarray(actions, np.int32) - int(action_space.start)
        a_mu, a_sd = np.zeros(1, np.float32), np.ones(1, np.float32)
    else:
        y = np.asarray(actions, np.float32).reshape(len(actions), -1)
        a_mu, a_sd = standardizer(y)
        y = (y - a_mu) / a_sd
    out_dim = int(action_space.n) if discrete else 2 * y.shape[1]
    net = mlp(config.hidden, out_dim)
    k_init, k_fit = jax.random.split(key)
    params = net.init(k_init, jnp.zeros((1, inputs.shape[1])))

    def loss(p, b):
        out = net.apply(p, b["x"])
        if discrete:
            logp = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(logp, b["y"][:, None], axis=1))
        d = out.shape[1] // 2
        mean, log_std = out[:, :d], jnp.clip(out[:, d:], LOG_STD_MIN, LOG_STD_MAX)
        return jnp.mean(jnp.sum(0.5 * ((b["y"] - mean) * jnp.exp(-log_std)) ** 2 + log_std, axis=-1))

    data = {"x": jnp.asarray((inputs - in_mu) / in_sd), "y": jnp.asarray(y)}
    params, losses = fit_params(k_fit, params, loss, data, steps=config.steps, batch_size=config.batch_size,
                                lr=config.lr)
    return InverseDynamics(params=params, config=config, discrete=discrete, in_mu=in_mu, in_sd=in_sd, a_mu=a_mu,
                           a_sd=a_sd, action_space=action_space,
                           final_loss=float(np.mean(losses[-max(1, config.steps // 20):])))


def labelling_error(pred: np.ndarray, true: np.ndarray, discrete: bool, reference: np.ndarray) -> dict:
    """MSE (Box) or accuracy (Discrete), with the constant predictor's error from `reference` labels."""
    if discrete:
        values, counts = np.unique(reference, return_counts=True)
        majority = values[counts.argmax()]
        return {"accuracy": float(np.mean(pred == true)), "baseline_accuracy": float(np.mean(true == majority)),
                "transitions": len(true)}
    p, t = pred.reshape(len(pred), -1), true.reshape(len(true), -1)
    mean = reference.reshape(len(reference), -1).mean(0)
    return {"mse": float(np.mean((p - t) ** 2)), "baseline_mse": float(np.mean((t - mean) ** 2)), "transitions": len(t)}


def label_actions(ds: EpisodeDataset, seed=0, config: IDMConfig = IDMConfig(), *,
                  true_actions: np.ndarray | None = None) -> EpisodeDataset:
    """SS-ORL proxy-labelling: train the IDM on labelled episodes, label the action-free ones.

    Held-out labelled episodes (`config.holdout`) measure the error before labelling; with
    `true_actions` ([N], the actions before hiding) the error on the proxy labels themselves is
    reported too. Labelled episodes become `action_known=True`; provenance lists which ones carry
    proxy labels.
    """
    holdout = check_fraction("holdout", config.holdout, allow_one=False)
    check_positive("idm steps", config.steps, integer=True)
    check_positive("window", config.window, integer=True, allow_zero=True)
    known = _known(ds)
    hidden_eps = np.flatnonzero(~known)
    if hidden_eps.size == 0:
        raise HeronError(f"dataset {ds.name!r} has no action-free episodes to label (every episode has actions); "
                         "hide some first with `heron data hide-actions`")
    labelled = np.flatnonzero(known)
    if labelled.size == 0:
        raise HeronError(f"dataset {ds.name!r} has no labelled episode to train the inverse dynamics model on: "
                         "keep actions in some episodes (hide-actions --fraction below 1)")
    key = as_key(seed)
    k_split, k_fit = jax.random.split(key)
    n_hold = round(holdout * labelled.size) if labelled.size >= 2 and holdout > 0 else 0
    n_hold = min(max(n_hold, 1 if holdout > 0 and labelled.size >= 2 else 0), labelled.size - 1)
    order = np.asarray(jax.random.permutation(k_split, labelled.size))
    held, train = np.sort(labelled[order[:n_hold]]), np.sort(labelled[order[n_hold:]])

    inputs = idm_inputs(ds, config.window)
    e_of_t = ds.episode_of_transition()
    train_t = np.isin(e_of_t, train)
    idm = fit_inverse_dynamics(inputs[train_t], ds.actions[train_t], ds.action_space, k_fit, config)
    info = {"idm": {"window": config.window, "hidden": list(config.hidden), "steps": config.steps,
                    "batch_size": config.batch_size, "lr": config.lr, "final_nll": idm.final_loss,
                    "distribution": "categorical" if idm.discrete else "diagonal Gaussian"},
            "train_episodes": len(train), "heldout_episodes": len(held)}
    if n_hold:
        held_t = np.isin(e_of_t, held)
        info["heldout_error"] = labelling_error(idm.predict(inputs[held_t]), ds.actions[held_t], idm.discrete,
                                                ds.actions[train_t])
    else:
        info["heldout_error"] = None  # one labelled episode: nothing to hold out
    hide_t = np.isin(e_of_t, hidden_eps)
    proxy = idm.predict(inputs[hide_t])
    if true_actions is not None:
        true_actions = np.asarray(true_actions)
        if true_actions.shape != ds.actions.shape:
            raise HeronError(f"true_actions has shape {true_actions.shape}, expected {ds.actions.shape}")
        truth = true_actions[hide_t]
        # episodes that were action-free already in the caller's source have no truth to compare with
        has = (truth >= int(ds.action_space.start)) if idm.discrete else \
            np.all(np.isfinite(truth.reshape(len(truth), -1)), axis=1)
        info["true_error"] = labelling_error(proxy[has], truth[has], idm.discrete, ds.actions[train_t]) \
            if has.any() else None
    actions = np.array(ds.actions, copy=True)
    actions[hide_t] = proxy
    out = derive(ds, actions=actions, action_known=np.ones(ds.num_episodes, bool))
    return out.with_step(step("label_actions", paper=PAPER, seed=seed_of(seed), proxy_labelled_episodes=hidden_eps,
                              proxy_labelled_transitions=int(hide_t.sum()), **info))


def hide_actions(ds: EpisodeDataset, fraction: float, seed=0, *, label: bool = False,
                 config: IDMConfig = IDMConfig()) -> EpisodeDataset:
    """Make round(fraction·E) labelled episodes action-free (NaN actions; −1 for Discrete, NaN being
    impossible in an integer array). With `label=True`, then proxy-label them with an IDM in the
    same call and report the error against the true actions."""
    fraction = check_fraction("fraction", fraction)
    known = _known(ds)
    labelled = np.flatnonzero(known)
    k = round(fraction * ds.num_episodes)
    if k > labelled.size:
        raise HeronError(f"cannot hide actions in {k} episodes ({fraction} of {ds.num_episodes}): only "
                         f"{labelled.size} still have actions; choose a smaller --fraction")
    key = as_key(seed)
    k_pick, k_label = jax.random.split(key)
    chosen = np.sort(labelled[np.asarray(jax.random.choice(k_pick, labelled.size, (k,), replace=False))]) if k else \
        np.zeros(0, np.int64)
    new_known = known.copy()
    new_known[chosen] = False
    hide_t = np.repeat(~new_known & known, ds.episode_lengths)
    actions = np.array(ds.actions, copy=True)
    actions[hide_t] = -1 if ds.discrete_actions else np.nan
    out = derive(ds, actions=actions, action_known=new_known).with_step(
        step("hide_actions", paper=PAPER, fraction=fraction, seed=seed_of(seed), hidden_episodes=k,
             hidden_transitions=int(hide_t.sum()), action_free_episodes_total=int((~new_known).sum())))
    if label and k:
        return label_actions(out, k_label, config, true_actions=ds.actions)
    return out
