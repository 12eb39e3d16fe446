"""Reward relabelling from a reward function, and a learned reward model r̂(s, a, s').

`relabel_rewards(ds, reward_fn)` is the hook: `reward_fn(obs, action, next_obs) -> reward` over
batches of transitions (numpy in, array-like [B] out). Preference learning will plug its own model
in here; `RewardModel` is the concrete one that makes `heron data fit-reward-model` /
`relabel-rewards` work end to end today: an MLP regression of r on (s, a, s') fitted on a labelled
dataset, saved as a Flax msgpack file (read back with `msgpack_restore`, never unpickled).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from heron import _fs
from heron.data.dataset import EpisodeDataset
from heron.data.transforms._common import (
    as_key,
    batched_apply,
    check_fraction,
    check_positive,
    derive,
    fit_params,
    jsonable,
    mlp,
    seed_of,
    standardizer,
    step,
)
from heron.errors import HeronError

MODEL_FORMAT = "heron-reward-model"
MODEL_VERSION = 1


def _action_spec(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
    return {"kind": "box", "shape": [int(d) for d in space.shape]}


def _features(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, spec: dict) -> np.ndarray:
    """[B, F]: s, a (one-hot when discrete), s' flattened and concatenated."""
    b = len(obs)
    if spec["kind"] == "discrete":
        idx = np.asarray(action, np.int64).reshape(b) - spec["start"]
        valid = (idx >= 0) & (idx < spec["n"])
        a = np.eye(spec["n"], dtype=np.float32)[np.where(valid, idx, 0)]
        a[~valid] = np.nan  # an action-free placeholder (-1) must not pass for a real action
    else:
        a = np.asarray(action, np.float32).reshape(b, -1)
    return np.concatenate([np.asarray(obs, np.float32).reshape(b, -1), a,
                           np.asarray(next_obs, np.float32).reshape(b, -1)], axis=1)


@dataclasses.dataclass(frozen=True)
class RewardModel:
    """r̂(s, a, s') = MLP(standardised [s, a, s']) · σ_r + μ_r; callable on batches of raw arrays."""

    params: dict
    hidden: tuple[int, ...]
    obs_shape: tuple[int, ...]
    action: dict
    x_mu: np.ndarray
    x_sd: np.ndarray
    r_mu: float
    r_sd: float
    meta: dict  # what it was trained on and how well it fits (JSON-able)

    def __call__(self, obs, action, next_obs) -> np.ndarray:
        x = (_features(obs, action, next_obs, self.action) - self.x_mu) / self.x_sd
        net = mlp(self.hidden, 1)
        return np.asarray(net.apply(self.params, jnp.asarray(x))[:, 0]) * self.r_sd + self.r_mu

    def check_compatible(self, ds: EpisodeDataset, where: str = "the reward model") -> None:
        if tuple(ds.observation_space.shape) != self.obs_shape or _action_spec(ds.action_space) != self.action:
            raise HeronError(f"{where} was fitted for observations {self.obs_shape} and actions {self.action}, but "
                             f"dataset {ds.name!r} has {tuple(ds.observation_space.shape)} and "
                             f"{_action_spec(ds.action_space)}; fit a reward model on data from the same task")


def fit_reward_model(ds: EpisodeDataset, seed=0, *, hidden=(256, 256), steps: int = 3000, batch_size: int = 256,
                     lr: float = 1e-3, holdout: float = 0.1) -> RewardModel:
    """MSE regression of r on (s, a, s') over the labelled transitions, holding out episodes to measure fit."""
    steps = check_positive("steps", steps, integer=True)
    holdout = check_fraction("holdout", holdout, allow_one=False)
    known = np.ones(ds.num_episodes, bool) if ds.action_known is None else np.asarray(ds.action_known, bool)
    labelled = np.flatnonzero(known)
    if labelled.size == 0:
        raise HeronError(f"dataset {ds.name!r} has no episode with actions: a reward model r(s, a, s') needs "
                         "labelled transitions (label them with `heron data label-actions`)")
    key = as_key(seed)
    k_split, k_init, k_fit = jax.random.split(key, 3)
    n_hold = min(max(round(holdout * labelled.size), 1), labelled.size - 1) if holdout > 0 and labelled.size >= 2 \
        else 0
    order = np.asarray(jax.random.permutation(k_split, labelled.size))
    held = labelled[order[:n_hold]]
    spec = _action_spec(ds.action_space)
    tr = ds.transitions()
    e_of_t = ds.episode_of_transition()
    train_t = known[e_of_t] & ~np.isin(e_of_t, held)
    held_t = np.isin(e_of_t, held)
    x = _features(tr.obs[train_t], tr.action[train_t], tr.next_obs[train_t], spec)
    r = tr.reward[train_t].astype(np.float32)
    x_mu, x_sd = standardizer(x)
    r_mu, r_sd = float(r.mean()), float(max(r.std(), 1e-6))
    net = mlp(hidden, 1)
    params = net.init(k_init, jnp.zeros((1, x.shape[1])))

    def loss(p, b):
        return jnp.mean((net.apply(p, b["x"])[:, 0] - b["y"]) ** 2)

    params, losses = fit_params(k_fit, params, loss, {"x": jnp.asarray((x - x_mu) / x_sd),
                                                      "y": jnp.asarray((r - r_mu) / r_sd)},
                                steps=steps, batch_size=batch_size, lr=lr)
    model = RewardModel(params=params, hidden=tuple(int(h) for h in hidden), obs_shape=tuple(ds.observation_space.shape),
                        action=spec, x_mu=x_mu, x_sd=x_sd, r_mu=r_mu, r_sd=r_sd, meta={})
    metrics = {"train_mse": float(np.mean((model(tr.obs[train_t], tr.action[train_t], tr.next_obs[train_t]) - r) ** 2)),
               "reward_var": float(r.var())}
    if n_hold:
        rh = tr.reward[held_t]
        metrics["heldout_mse"] = float(np.mean((model(tr.obs[held_t], tr.action[held_t], tr.next_obs[held_t]) - rh) ** 2))
        metrics["heldout_episodes"] = int(n_hold)
    meta = jsonable({"trained_on": ds.name, "env_id": ds.env_id, "seed": seed_of(seed), "steps": steps,
                     "batch_size": batch_size, "lr": lr, "hidden": list(hidden), "final_loss_std_units":
                     float(np.mean(losses[-max(1, steps // 20):])), **metrics})
    return dataclasses.replace(model, meta=meta)


# -------------------------------------------------------------------- file format (msgpack, no pickle)
def save_reward_model(model: RewardModel, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the model as one Flax msgpack file, atomically (temp file + rename)."""
    path = Path(path)
    if path.exists() and not force:
        raise HeronError(f"{path} already exists: choose another file, or pass --force to replace it")
    blob = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "hidden": list(model.hidden),
            "obs_shape": list(model.obs_shape), "action": dict(model.action),
            "x_mu": np.asarray(model.x_mu), "x_sd": np.asarray(model.x_sd), "r_mu": float(model.r_mu),
            "r_sd": float(model.r_sd), "meta_json": _fs.to_json_bytes(model.meta).decode(),
            "params": jax.tree.map(np.asarray, serialization.to_state_dict(model.params))}
    path.parent.mkdir(parents=True, exist_ok=True)
    _fs.atomic_write_bytes(path, serialization.msgpack_serialize(blob))
    return path


def load_reward_model(path: str | os.PathLike) -> RewardModel:
    """Read a reward model file; a missing, foreign or damaged file is one HeronError."""
    import json

    path = Path(path)
    if not path.is_file():
        raise HeronError(f"no reward model at {path}: fit one with `heron data fit-reward-model SRC {path}`")

    def bad(defect: str) -> HeronError:
        return HeronError(f"{path} is not a usable heron reward model ({defect}); re-create it with "
                          "`heron data fit-reward-model`")

    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - msgpack raises many types on truncated / foreign bytes
        raise bad(f"unreadable msgpack: {type(err).__name__}") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise bad("no heron-reward-model header")
    if blob.get("version") != MODEL_VERSION:
        raise bad(f"version {blob.get('version')!r}, this heron reads version {MODEL_VERSION}")
    try:
        hidden = tuple(int(h) for h in blob["hidden"])
        obs_shape = tuple(int(d) for d in blob["obs_shape"])
        action = {str(k): (v.decode() if isinstance(v, bytes) else v) for k, v in dict(blob["action"]).items()}
        if action.get("kind") == "discrete":
            action = {"kind": "discrete", "n": int(action["n"]), "start": int(action["start"])}
            a_dim = action["n"]
        elif action.get("kind") == "box":
            action = {"kind": "box", "shape": [int(d) for d in action["shape"]]}
            a_dim = int(np.prod(action["shape"]))
        else:
            raise ValueError("unknown action kind")
        in_dim = 2 * int(np.prod(obs_shape)) + a_dim
        x_mu = np.asarray(blob["x_mu"], np.float32)
        x_sd = np.asarray(blob["x_sd"], np.float32)
        r_mu, r_sd = float(blob["r_mu"]), float(blob["r_sd"])
        meta = json.loads(blob.get("meta_json") or "{}")
        if x_mu.shape != (in_dim,) or x_sd.shape != (in_dim,) or not np.all(x_sd > 0) or not r_sd > 0:
            raise ValueError("normalisation statistics do not match the shapes")
    except HeronError:
        raise
    except Exception as err:  # noqa: BLE001 - any malformed field (KeyError, TypeError, ValueError) is one defect
        raise bad(f"malformed header: {err}") from None
    template = mlp(hidden, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, in_dim)))
    try:
        params = serialization.from_state_dict(template, blob["params"])
    except Exception as err:  # noqa: BLE001 - flax raises several types for a tree that does not fit
        raise bad(f"parameters do not fit the network: {err}") from None
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(template)):
        if np.shape(got) != np.shape(want) or not np.all(np.isfinite(got)):
            raise bad("parameters have the wrong shapes or are not finite")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    return RewardModel(params=params, hidden=hidden, obs_shape=obs_shape, action=action, x_mu=x_mu, x_sd=x_sd,
                       r_mu=r_mu, r_sd=r_sd, meta=meta)


# -------------------------------------------------------------------- the hook
def relabel_rewards(ds: EpisodeDataset, reward_fn: Callable, *, description: str | dict = "custom reward function",
                    batch_size: int = 8192, seed=None) -> EpisodeDataset:
    """Replace every reward with `reward_fn(obs, action, next_obs)`, computed over batches.

    Deterministic (`seed` is only recorded). Action-free episodes pass their NaN placeholder
    actions: a reward function that needs actions then yields NaN, reported as an error.
    Provenance records the description, and the new rewards' mean/std and correlation with the old.
    """
    if isinstance(reward_fn, RewardModel):
        reward_fn.check_compatible(ds)
    tr = ds.transitions()
    new = batched_apply(lambda o, a, o2: np.asarray(reward_fn(o, a, o2), np.float32).reshape(-1),
                        (tr.obs, tr.action, tr.next_obs), batch_size)
    if new.shape != (ds.num_transitions,):
        raise HeronError(f"the reward function returned {new.shape[0]} rewards for {ds.num_transitions} transitions: "
                         "it must map a batch of B transitions to B rewards")
    if not np.all(np.isfinite(new)):
        bad = int((~np.isfinite(new)).sum())
        raise HeronError(f"the reward function returned {bad} non-finite rewards on dataset {ds.name!r}"
                         + (" (its action-free episodes have NaN actions: label them first with "
                            "`heron data label-actions`, or use a reward of states only)"
                            if ds.action_known is not None and not np.all(ds.action_known) else ""))
    old = ds.rewards.astype(np.float64)
    corr = float(np.corrcoef(old, new)[0, 1]) if old.std() > 0 and new.std() > 0 else None
    out = derive(ds, rewards=new.astype(np.float32))
    return out.with_step(step("relabel_rewards", reward_model=description, seed=seed,
                              reward_mean=float(new.mean()), reward_std=float(new.std()),
                              previous_reward_mean=float(old.mean()), corr_with_previous=corr,
                              mse_to_previous=float(np.mean((new - old) ** 2))))
