"""Dataset diagnostics: the dataset card, and TQ / SACo from "A Dataset Perspective on Offline RL".

Schweighofer et al. (CoLLAs 2022, arXiv:2111.04714) characterise an offline dataset D by two measures:

    TQ(D)   = (ḡ(D) − g_min) / (g_max − g_min)        trajectory quality (exploitation)
    SACo(D) = u_{s,a}(D) / u_{s,a}(D_ref)             state-action coverage (exploration)

ḡ(D) is the average return of D's episodes; g_min / g_max are the returns of a random and of an expert
(online-trained) policy — here the dataset's `ref_min_score` / `ref_max_score`. u_{s,a}(D) is the
number of unique state-action pairs in D and D_ref is the replay buffer of an online training run on
the same task. Returns are undiscounted, as in the authors' code (kschweig/OfflineRL,
`Evaluator.get_returns`) and as D4RL reference scores are.

Continuous states and actions are discretised before counting (the paper's environments are mostly
discrete). The grid, following the authors' code (`Evaluator.get_unique_states`: per-dimension linear
bins between limits, 100 bins): every float dimension of (s, a) is cut into `bins` equal cells spanning
[min, max] of the *grid source* — the reference dataset when there is one, so D and D_ref are counted
on the same grid — plus one overflow cell on each side for values outside that range. Integer
observation dimensions and Discrete actions are used as they are. Two pairs are the same when every
dimension falls in the same cell; the count is exact (rows compared byte for byte, no sketch), does not
depend on the order of transitions, and takes about 1.5 s for 1M transitions of 17 + 6 dimensions
(grid, codes, both counts; one CPU core).

Effect of the resolution: finer grids count more pairs as distinct. With d float dimensions there are
bins**d cells, so in high dimensions (e.g. 17 + 6 for HalfCheetah) almost every transition gets its own
cell and u_{s,a} approaches the number of transitions; SACo then mostly compares dataset sizes. Lower
`bins` (e.g. 10) to measure coverage of a coarser grid. The grid's range comes from min/max, so one
outlier in the grid source stretches every cell of its dimension.

Everything here is a function of its arguments except `find_suite_reference`, which reads a suite's
manifest. Plots use matplotlib's Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from heron.data.dataset import EpisodeDataset
from heron.errors import HeronError

DEFAULT_BINS = 100  # per float dimension, as in the authors' code
MAX_PER_DIM = 64  # per-dimension observation/action tables beyond this many dimensions are summarised
_PLOT_POINTS = 20_000  # states drawn in the coverage view (evenly spaced, so the plot is deterministic)

TQ_DEFINITION = "TQ = (mean episode return − g_min) / (g_max − g_min); g_min/g_max = ref_min_score/ref_max_score (random/expert)"
SACO_DEFINITION = "SACo = u_{s,a}(D) / u_{s,a}(D_ref); u = unique discretised state-action pairs, D_ref = online replay buffer"


# ===================================================================== the two measures
def trajectory_quality(returns, g_min: float, g_max: float) -> float:
    """TQ = (ḡ − g_min) / (g_max − g_min), ḡ the mean of the episode `returns` (undiscounted)."""
    returns = np.asarray(returns, np.float64).reshape(-1)
    if returns.size == 0:
        raise HeronError("TQ needs at least one episode return")
    if not (np.isfinite(g_min) and np.isfinite(g_max)) or g_max == g_min:
        raise HeronError(f"TQ needs finite, distinct reference returns, got g_min={g_min}, g_max={g_max}: "
                         "set ref_min_score (random policy) and ref_max_score (expert) on the dataset")
    return float((returns.mean() - g_min) / (g_max - g_min))


def state_action_rows(ds: EpisodeDataset) -> tuple[np.ndarray, np.ndarray]:
    """(states [M, ds], actions [M, da]) of the M transitions whose actions are known, flattened.

    States are o_t (where the action was taken; final observations carry no action). Action-free
    episodes are left out: their NaN placeholder actions are not state-action pairs.
    """
    idx = ds.obs_index()
    keep = None
    if ds.action_known is not None and not np.all(ds.action_known):
        keep = np.repeat(np.asarray(ds.action_known, bool), ds.episode_lengths)
        idx = idx[keep]
    states = ds.observations[idx].reshape(len(idx), -1)
    actions = ds.actions if keep is None else ds.actions[keep]
    return states, actions.reshape(len(idx), -1)


def make_grid(states: np.ndarray, actions: np.ndarray | None, bins: int = DEFAULT_BINS, *,
              exact_states: bool = False, exact_actions: bool = False) -> dict:
    """The discretisation grid fitted to (states, actions): per-dimension [lo, hi] and which columns are exact.

    `exact_*` columns (integer observations, Discrete actions) are compared as they are, not binned.
    """
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise HeronError(f"bins must be a positive integer, got {bins!r}")
    cols = [np.asarray(states).reshape(len(states), -1)]
    exact = [exact_states] * cols[0].shape[1]
    if actions is not None:
        cols.append(np.asarray(actions).reshape(len(actions), -1))
        exact += [exact_actions] * cols[1].shape[1]
    lo = np.concatenate([c.min(0) if len(c) else np.zeros(c.shape[1]) for c in cols]).astype(np.float64)
    hi = np.concatenate([c.max(0) if len(c) else np.zeros(c.shape[1]) for c in cols]).astype(np.float64)
    return {"bins": int(bins), "lo": lo, "hi": hi, "exact": np.asarray(exact, bool)}


def discretise(states: np.ndarray, actions: np.ndarray | None, grid: dict) -> np.ndarray:
    """[M, d] integer cell codes: floor(bins·(x − lo)/(hi − lo)) in [0, bins−1], −1 below lo, bins above hi."""
    cols = [np.asarray(states).reshape(len(states), -1)]
    if actions is not None:
        cols.append(np.asarray(actions).reshape(len(actions), -1))
    d = sum(c.shape[1] for c in cols)
    if d != len(grid["lo"]):
        raise HeronError(f"cannot discretise {d}-dimensional state-action rows on a {len(grid['lo'])}-dimensional "
                         "grid: the dataset and the reference have different spaces")
    bins, lo, hi, exact = grid["bins"], grid["lo"], grid["hi"], grid["exact"]
    width = hi - lo
    scale = np.divide(bins, width, out=np.zeros_like(width), where=width > 0)
    m = len(cols[0])
    exact_max = max((np.abs(c[:, exact[j:j + c.shape[1]]]).max(initial=0)
                     for j, c in zip(np.cumsum([0] + [c.shape[1] for c in cols[:-1]]), cols)), default=0)
    # the smallest integer type that holds every code keeps the byte-wise comparison in unique_rows cheap
    span = max(float(exact_max), bins + 1)
    dtype = np.int16 if span < 2 ** 15 else np.int32 if span < 2 ** 31 else np.int64
    codes = np.empty((m, d), dtype)
    j = 0
    for c in cols:
        for k in range(c.shape[1]):  # column by column: no [M, d] float64 temporaries
            x = c[:, k]
            if exact[j]:
                codes[:, j] = x
            else:
                x = x.astype(np.float64)
                code = np.clip(np.floor((x - lo[j]) * scale[j]), 0, bins - 1)
                code[x < lo[j]] = -1  # overflow cells: outside the grid source's range, never merged with edge cells
                code[x > hi[j]] = bins
                codes[:, j] = code
            j += 1
    return codes


def unique_rows(codes: np.ndarray) -> int:
    """Number of distinct rows of an integer array (exact: rows viewed as raw bytes, then np.unique)."""
    if codes.shape[0] == 0:
        return 0
    rows = np.ascontiguousarray(codes.reshape(len(codes), -1))
    return int(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()).size)


def _exact_flags(ds: EpisodeDataset) -> tuple[bool, bool]:
    return (not np.issubdtype(ds.observation_space.dtype, np.floating)), ds.discrete_actions


def grid_for(ds: EpisodeDataset, bins: int = DEFAULT_BINS) -> dict:
    """The grid fitted to `ds`'s state-action pairs (use the reference's grid for SACo)."""
    states, actions = state_action_rows(ds)
    exact_s, exact_a = _exact_flags(ds)
    return make_grid(states, actions, bins, exact_states=exact_s, exact_actions=exact_a)


def coverage_counts(ds: EpisodeDataset, grid: dict | None = None, bins: int = DEFAULT_BINS) -> tuple[int, int]:
    """(u_{s,a}, u_s): distinct discretised (o_t, a_t) pairs and distinct o_t on `grid` (default: fitted to ds).

    The state part of the grid is its first columns, so u_s uses the same cells as u_{s,a}.
    """
    grid = grid if grid is not None else grid_for(ds, bins)
    states, actions = state_action_rows(ds)
    codes = discretise(states, actions, grid)
    return unique_rows(codes), unique_rows(codes[:, :states.shape[1]])


def unique_state_actions(ds: EpisodeDataset, grid: dict | None = None, bins: int = DEFAULT_BINS) -> int:
    """u_{s,a}(ds): distinct discretised (o_t, a_t) pairs on `grid` (default: a grid fitted to ds itself)."""
    return coverage_counts(ds, grid, bins)[0]


def unique_states(ds: EpisodeDataset, grid: dict | None = None, bins: int = DEFAULT_BINS) -> int:
    """u_s(ds): distinct discretised states o_t (those with known actions) on the state part of `grid`."""
    return coverage_counts(ds, grid, bins)[1]


def check_reference(ds: EpisodeDataset, reference: EpisodeDataset) -> None:
    same_kind = type(ds.action_space) is type(reference.action_space)
    if (ds.observation_space.shape != reference.observation_space.shape or not same_kind
            or (not ds.discrete_actions and ds.action_space.shape != reference.action_space.shape)):
        raise HeronError(f"reference {reference.name!r} ({reference.observation_space}, {reference.action_space}) does "
                         f"not match dataset {ds.name!r} ({ds.observation_space}, {ds.action_space}): SACo compares "
                         "datasets of the same task; pass the replay dataset of that task with --reference")


def state_action_coverage(ds: EpisodeDataset, reference: EpisodeDataset, bins: int = DEFAULT_BINS) -> dict:
    """SACo = u_{s,a}(ds) / u_{s,a}(reference), both counted on the reference's grid.

    Returns {"value", "unique_state_actions", "reference_unique_state_actions", "unique_states",
    "reference_unique_states", "state_coverage"} (state_coverage = u_s(ds) / u_s(reference)).
    """
    check_reference(ds, reference)
    grid = grid_for(reference, bins)
    (u, s), (u_ref, s_ref) = coverage_counts(ds, grid), coverage_counts(reference, grid)
    if u_ref == 0:
        raise HeronError(f"reference {reference.name!r} has no transitions with known actions; SACo is undefined")
    return {"value": u / u_ref, "unique_state_actions": u, "reference_unique_state_actions": u_ref,
            "unique_states": s, "reference_unique_states": s_ref, "state_coverage": s / s_ref if s_ref else None}


# ===================================================================== the card
def _num(x):
    """A JSON number (None for NaN/inf, ints stay ints)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if np.isfinite(x) else None


def summary(x) -> dict:
    """mean/std/min/quartiles/max of a 1-D sample (None everywhere when it is empty)."""
    x = np.asarray(x, np.float64).reshape(-1)
    keys = ("mean", "std", "min", "q25", "median", "q75", "max")
    if x.size == 0:
        return dict.fromkeys(keys)
    q = np.percentile(x, [0, 25, 50, 75, 100])
    return {"mean": _num(x.mean()), "std": _num(x.std()), "min": _num(q[0]), "q25": _num(q[1]),
            "median": _num(q[2]), "q75": _num(q[3]), "max": _num(q[4])}


def _per_dim(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if len(x) == 0:
        return {"mean": [], "std": [], "min": [], "max": []}
    return {"mean": [_num(v) for v in x.mean(0)], "std": [_num(v) for v in x.std(0)],
            "min": [_num(v) for v in x.min(0)], "max": [_num(v) for v in x.max(0)]}


def _endings(ds: EpisodeDataset) -> dict:
    last = ds.episode_starts[1:] - 1
    term, trunc = ds.terminations[last], ds.truncations[last]
    # Gymnasium allows both flags at once; termination wins (no bootstrapping either way)
    return {"terminated": int(term.sum()), "truncated": int((trunc & ~term).sum()),
            "unfinished": int((~term & ~trunc).sum())}


def _action_stats(ds: EpisodeDataset) -> dict:
    known_t = np.ones(ds.num_transitions, bool) if ds.action_known is None else \
        np.repeat(np.asarray(ds.action_known, bool), ds.episode_lengths)
    a = ds.actions[known_t]
    space = ds.action_space
    out = {"space": str(space), "transitions_with_actions": int(known_t.sum())}
    if isinstance(space, gym.spaces.Discrete):
        if space.n <= 4096:
            values = np.arange(space.start, space.start + space.n)
            counts = np.bincount(np.asarray(a, np.int64) - int(space.start), minlength=int(space.n))
        else:  # huge Discrete spaces: only the actions that occur
            values, counts = np.unique(a, return_counts=True)
        out["kind"] = "discrete"
        out["counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
        out["fractions"] = {str(int(v)): _num(c / max(len(a), 1)) for v, c in zip(values, counts)}
        return out
    flat = a.reshape(len(a), -1).astype(np.float64)
    low, high = np.broadcast_to(space.low, space.shape).reshape(-1), np.broadcast_to(space.high, space.shape).reshape(-1)
    tol = 1e-6 * np.maximum(1.0, np.where(np.isfinite(high - low), high - low, 1.0))
    out["kind"] = "box"
    out["dims"] = flat.shape[1]
    if flat.shape[1] <= MAX_PER_DIM:
        out.update(_per_dim(flat))
        n = max(len(flat), 1)
        # finite bounds only; a policy squashed to its bounds shows up here (e.g. saturated tanh)
        out["at_low"] = [_num((flat[:, j] <= low[j] + tol[j]).sum() / n) if np.isfinite(low[j]) else None
                         for j in range(flat.shape[1])]
        out["at_high"] = [_num((flat[:, j] >= high[j] - tol[j]).sum() / n) if np.isfinite(high[j]) else None
                          for j in range(flat.shape[1])]
    else:
        out["all_dims"] = summary(flat)
    return out


def _observation_stats(ds: EpisodeDataset) -> dict:
    obs = ds.observations.reshape(len(ds.observations), -1)
    out = {"space": str(ds.observation_space), "dims": obs.shape[1], "rows": len(obs)}
    if obs.shape[1] <= MAX_PER_DIM:
        out.update(_per_dim(obs))
    else:
        out["all_dims"] = summary(obs)
    return out


def _provenance_summary(ds: EpisodeDataset) -> dict:
    steps = list(ds.provenance)
    if not steps:
        return {"source": None, "transforms": [], "steps": 0}

    def label(step) -> str:
        if not isinstance(step, dict):
            return str(step)
        for key in ("transform", "op", "name", "policy", "imported_from", "kind"):
            if isinstance(step.get(key), str):
                return f"{key}={step[key]}" if key in ("policy", "imported_from") else step[key]
        if "sources" in step:
            return f"concatenation of {len(step['sources'])} datasets"
        return ", ".join(list(step)[:3]) or "step"

    return {"source": label(steps[0]), "transforms": [label(s) for s in steps[1:]], "steps": len(steps)}


def dataset_card(ds: EpisodeDataset, reference: EpisodeDataset | None = None, *, bins: int = DEFAULT_BINS,
                 reference_label: str | None = None, reference_missing: str | None = None) -> dict:
    """Everything `heron data inspect` reports about `ds`, as a JSON-able dict.

    `reference` is D_ref for SACo (the task's online replay buffer); `reference_label` says where it came
    from and `reference_missing` why there is none (shown as SACo's reason).
    """
    returns = ds.episode_returns()
    refs = ds.ref_min_score is not None and ds.ref_max_score is not None
    card = {
        "name": ds.name, "env_id": ds.env_id,
        "episodes": ds.num_episodes, "transitions": ds.num_transitions,
        "returns": summary(returns),
        "ref_min_score": None if ds.ref_min_score is None else _num(ds.ref_min_score),
        "ref_max_score": None if ds.ref_max_score is None else _num(ds.ref_max_score),
        "normalized_returns": None,
        "episode_lengths": summary(ds.episode_lengths),
        "endings": _endings(ds),
        "actions": _action_stats(ds),
        "action_free_episodes": {
            "count": 0 if ds.action_known is None else int((~np.asarray(ds.action_known, bool)).sum()),
            "fraction": 0.0 if ds.action_known is None else _num((~np.asarray(ds.action_known, bool)).mean())},
        "episode_weights": {"set": ds.episode_weights is not None,
                            **({} if ds.episode_weights is None else summary(ds.episode_weights))},
        "observations": _observation_stats(ds),
        "provenance": _provenance_summary(ds),
    }
    if refs and ds.ref_max_score != ds.ref_min_score:
        card["normalized_returns"] = summary(ds.normalized_score(returns))

    # ---- TQ
    tq = {"value": None, "reason": None, "definition": TQ_DEFINITION, "mean_return": card["returns"]["mean"],
          "g_min": card["ref_min_score"], "g_max": card["ref_max_score"]}
    if not refs:
        tq["reason"] = ("dataset has no reference returns (ref_min_score/ref_max_score): datasets made by "
                        "`heron data suite make` carry them")
    elif ds.ref_max_score == ds.ref_min_score or not np.isfinite([ds.ref_min_score, ds.ref_max_score]).all():
        tq["reason"] = f"reference returns are unusable (ref_min_score={ds.ref_min_score}, ref_max_score={ds.ref_max_score})"
    else:
        tq["value"] = trajectory_quality(returns, ds.ref_min_score, ds.ref_max_score)
    card["tq"] = tq

    # ---- coverage: raw counts always; SACo and the state-coverage ratio only against a reference
    exact_s, exact_a = _exact_flags(ds)
    saco = {"value": None, "reason": None, "definition": SACO_DEFINITION,
            "unique_state_actions": None, "unique_states": None,
            "reference": None, "reference_unique_state_actions": None, "reference_unique_states": None,
            "state_coverage": None,
            "discretisation": {
                "bins_per_float_dim": int(bins),
                "grid_range_from": "reference" if reference is not None else "dataset",
                "exact_dims": ([] if not exact_s else ["observations"]) + ([] if not exact_a else ["actions (discrete)"]),
                "rule": "cell = floor(bins·(x − min)/(max − min)) per float dimension, min/max of the grid source; "
                        "one overflow cell each side; integer dimensions exact; pairs equal when all cells equal"}}
    if reference is None:
        saco["unique_state_actions"], saco["unique_states"] = coverage_counts(ds, bins=bins)
        saco["reason"] = reference_missing or "no reference dataset: pass --reference <the task's replay dataset>"
    else:
        res = state_action_coverage(ds, reference, bins)
        saco.update({k: res[k] for k in ("value", "unique_state_actions", "unique_states", "reference_unique_state_actions",
                                         "reference_unique_states", "state_coverage")})
        saco["reference"] = reference_label or reference.name
    card["saco"] = saco
    return card


# ===================================================================== text
def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:.{digits}g}"


def _stats_line(s: dict) -> str:
    if s.get("mean") is None:
        return "n/a"
    return (f"mean {_fmt(s['mean'])} ± {_fmt(s['std'])}   min {_fmt(s['min'])}  q25 {_fmt(s['q25'])}  "
            f"median {_fmt(s['median'])}  q75 {_fmt(s['q75'])}  max {_fmt(s['max'])}")


def card_text(card: dict) -> str:
    """The card as aligned plain text (what `heron data inspect` prints)."""
    lines = []

    def row(label: str, text: str):
        lines.append(f"{label:<12} {text}")

    row("dataset", f"{card['name']}" + (f"   env {card['env_id']}" if card.get("env_id") else "   env unknown"))
    row("spaces", f"obs {card['observations']['space']}   action {card['actions']['space']}")
    row("size", f"{card['episodes']:,} episodes, {card['transitions']:,} transitions")
    row("returns", _stats_line(card["returns"]))
    if card.get("normalized_returns"):
        row("normalised", _stats_line(card["normalized_returns"])
            + f"   (100·(g − {_fmt(card['ref_min_score'])})/({_fmt(card['ref_max_score'])} − {_fmt(card['ref_min_score'])}))")
    row("lengths", _stats_line(card["episode_lengths"]))
    e = card["endings"]
    row("endings", f"terminated {e['terminated']:,} · truncated {e['truncated']:,} · unfinished {e['unfinished']:,}")
    act = card["actions"]
    if act["kind"] == "discrete":
        total = max(act["transitions_with_actions"], 1)
        row("actions", "   ".join(f"{k}: {c:,} ({100 * c / total:.1f}%)" for k, c in act["counts"].items()))
    elif "mean" in act:
        for j in range(act["dims"]):
            bounds = "".join(f"  at {side} {100 * v:.1f}%" for side, v in (("low", act["at_low"][j]), ("high", act["at_high"][j]))
                             if v is not None)
            row("actions" if j == 0 else "", f"[{j}] mean {_fmt(act['mean'][j])} ± {_fmt(act['std'][j])}  "
                                             f"min {_fmt(act['min'][j])}  max {_fmt(act['max'][j])}{bounds}")
    else:
        row("actions", f"{act['dims']} dims, all values: " + _stats_line(act["all_dims"]))
    af = card["action_free_episodes"]
    row("action-free", f"{af['count']:,} episodes ({100 * (af['fraction'] or 0):.1f}%)")
    w = card["episode_weights"]
    row("weights", "uniform (not set)" if not w["set"] else f"set: min {_fmt(w['min'])}  mean {_fmt(w['mean'])}  max {_fmt(w['max'])}")
    obs = card["observations"]
    if "mean" in obs:
        row("observations", "mean " + " ".join(_fmt(v, 3) for v in obs["mean"]))
        row("", "std  " + " ".join(_fmt(v, 3) for v in obs["std"]))
        row("", f"min  {_fmt(min(v for v in obs['min'] if v is not None) if obs['min'] else None, 3)}   "
                f"max  {_fmt(max(v for v in obs['max'] if v is not None) if obs['max'] else None, 3)}")
    else:
        row("observations", f"{obs['dims']} dims, all values: " + _stats_line(obs["all_dims"]))
    p = card["provenance"]
    row("provenance", "none recorded" if not p["steps"] else
        f"source {p['source']}" + (f"; transforms: {' → '.join(p['transforms'])}" if p["transforms"] else "; no transforms"))
    tq = card["tq"]
    if tq["value"] is None:
        row("TQ", f"unavailable: {tq['reason']}")
    else:
        row("TQ", f"{tq['value']:.4f} = ({_fmt(tq['mean_return'])} − {_fmt(tq['g_min'])}) / "
                  f"({_fmt(tq['g_max'])} − {_fmt(tq['g_min'])})   [mean return between random and expert]")
    s = card["saco"]
    d = s["discretisation"]
    grid = f"{d['bins_per_float_dim']} bins per float dim over the {d['grid_range_from']}'s range"
    if s["value"] is None:
        row("SACo", f"unavailable: {s['reason']}")
        row("coverage", f"{s['unique_state_actions']:,} unique state-action pairs, {s['unique_states']:,} unique states "
                        f"({grid})")
    else:
        row("SACo", f"{s['value']:.4f} = {s['unique_state_actions']:,} / {s['reference_unique_state_actions']:,} "
                    f"unique state-action pairs vs reference {s['reference']}")
        row("coverage", f"states {s['unique_states']:,} / {s['reference_unique_states']:,}"
                        + (f" = {s['state_coverage']:.4f}" if s["state_coverage"] is not None else "") + f"   ({grid})")
    return "\n".join(lines)


def card_markdown(card: dict, image: str | None = "card.png") -> str:
    """card.md: the text card, the definitions used, and the figure."""
    disc = card["saco"]["discretisation"]
    grid = f"- SACo grid: {disc['rule']} ({disc['bins_per_float_dim']} bins per float dimension)."
    source = ("- Source: Schweighofer et al., *A Dataset Perspective on Offline Reinforcement Learning*, "
              "CoLLAs 2022 (arXiv:2111.04714).")
    parts = [f"# Dataset card: {card['name']}", "", "```", card_text(card), "```", "",
             f"- {card['tq']['definition']}", f"- {card['saco']['definition']}", grid, source, ""]
    if image:
        parts += [f"![dataset card]({image})", ""]
    return "\n".join(parts)


def card_json(card: dict) -> str:
    """Strict JSON (no NaN: missing values are null)."""
    return json.dumps(card, indent=2, allow_nan=False)


# ===================================================================== figure
def _pca_2d(x: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project x on the first two principal components of `fit` (standardised by fit's mean/std)."""
    mean, std = fit.mean(0), fit.std(0)
    std = np.where(std > 0, std, 1.0)
    z = (fit - mean) / std
    _, s, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    var = s ** 2 / max((s ** 2).sum(), 1e-12)
    k = min(2, vt.shape[0])
    proj = ((x - mean) / std) @ vt[:k].T
    if k < 2:
        proj = np.concatenate([proj, np.zeros((len(proj), 2 - k))], axis=1)
        var = np.concatenate([var, np.zeros(2 - len(var))])
    return proj, var[:2]


def _spread(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).astype(np.int64)) if n else np.zeros(0, np.int64)


def plot_card(ds: EpisodeDataset, card: dict, path: str | os.PathLike | None = None,
              reference: EpisodeDataset | None = None) -> bytes:
    """The card's figure as PNG bytes (also written atomically to `path` when given).

    Panels: episode returns, episode lengths, state coverage (states projected on two principal
    components, coloured by their episode's return; the reference's states in grey underneath), and
    one histogram per action dimension (a bar chart for Discrete actions).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    act = card["actions"]
    n_act = 1 if act["kind"] == "discrete" else min(act["dims"], 6)
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1])
    ax_r, ax_l, ax_s = top.subplots(1, 3)
    fig.suptitle(f"{card['name']}: {card['episodes']:,} episodes, {card['transitions']:,} transitions"
                 + (f" ({card['env_id']})" if card.get("env_id") else ""), fontsize="large")

    returns = ds.episode_returns()
    ax_r.hist(returns, bins=min(50, max(10, ds.num_episodes // 4)), color="C0", alpha=0.85)
    for val, lab, style in ((card["ref_min_score"], "g_min (random)", ":"), (card["ref_max_score"], "g_max (expert)", "--")):
        if val is not None:
            ax_r.axvline(val, color="black", linestyle=style, linewidth=1.2, label=lab)
    tq = card["tq"]["value"]
    ax_r.set_title("episode returns" + (f" (TQ = {tq:.3f})" if tq is not None else " (TQ n/a)"))
    ax_r.set_xlabel("return (undiscounted)")
    ax_r.set_ylabel("episodes")
    if card["ref_min_score"] is not None:
        ax_r.legend(fontsize="small")

    lengths = ds.episode_lengths
    ax_l.hist(lengths, bins=min(50, max(10, len(np.unique(lengths)))), color="C1", alpha=0.85)
    e = card["endings"]
    ax_l.set_title(f"episode lengths (term {e['terminated']}, trunc {e['truncated']}, unfinished {e['unfinished']})",
                   fontsize="medium")
    ax_l.set_xlabel("transitions")
    ax_l.set_ylabel("episodes")

    states = ds.observations[ds.obs_index()].reshape(ds.num_transitions, -1).astype(np.float64)
    ep_return = np.repeat(returns, ds.episode_lengths)
    pick = _spread(len(states), _PLOT_POINTS if states.shape[1] <= 512 else 2_000)
    if states.shape[1] == 1:
        ax_s.hist(states[:, 0], bins=50, color="C2", alpha=0.85)
        ax_s.set_title("state coverage: the single observation dimension")
        ax_s.set_xlabel("observation")
    else:
        fit = states[pick]
        ref_pts = None
        if reference is not None:
            rs = reference.observations[reference.obs_index()].reshape(reference.num_transitions, -1).astype(np.float64)
            ref_pts = rs[_spread(len(rs), _PLOT_POINTS)]
            fit = ref_pts
        proj, var = _pca_2d(states[pick], fit)
        if ref_pts is not None:
            rp, _ = _pca_2d(ref_pts, fit)
            ax_s.scatter(rp[:, 0], rp[:, 1], s=3, color="0.8", label="reference", rasterized=True)
        sc = ax_s.scatter(proj[:, 0], proj[:, 1], s=3, c=ep_return[pick], cmap="viridis", rasterized=True)
        top.colorbar(sc, ax=ax_s, label="episode return")
        basis = "reference" if ref_pts is not None else "this dataset"
        ax_s.set_title(f"state coverage: PCA of standardised states\n(fitted on {basis}; "
                       f"PC1 {100 * var[0]:.0f}%, PC2 {100 * var[1]:.0f}% of variance)", fontsize="medium")
        ax_s.set_xlabel("PC1")
        ax_s.set_ylabel("PC2")
        if ref_pts is not None:
            ax_s.legend(fontsize="small", markerscale=4)

    known_t = np.ones(ds.num_transitions, bool) if ds.action_known is None else \
        np.repeat(np.asarray(ds.action_known, bool), ds.episode_lengths)
    actions = ds.actions[known_t]
    axes = np.atleast_1d(bottom.subplots(1, n_act))
    if act["kind"] == "discrete":
        keys = list(act["counts"])
        axes[0].bar(keys, [act["counts"][k] for k in keys], color="C4")
        axes[0].set_title("actions (counts)")
        axes[0].set_xlabel("action")
        axes[0].set_ylabel("transitions")
    else:
        flat = actions.reshape(len(actions), -1)
        low = np.broadcast_to(ds.action_space.low, ds.action_space.shape).reshape(-1)
        high = np.broadcast_to(ds.action_space.high, ds.action_space.shape).reshape(-1)
        for j, ax in enumerate(axes):
            ax.hist(flat[:, j], bins=50, color="C4", alpha=0.85)
            for b in (low[j], high[j]):
                if np.isfinite(b):
                    ax.axvline(b, color="black", linestyle=":", linewidth=1)
            ax.set_title(f"action[{j}]" + (f" (first {n_act} of {act['dims']} dims)" if j == 0 and act["dims"] > n_act else ""),
                         fontsize="medium")
            ax.set_xlabel("value")
        axes[0].set_ylabel("transitions")
    for ax in (ax_r, ax_l, ax_s, *axes):
        ax.grid(True, alpha=0.3)

    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    data = buf.getvalue()
    if path is not None:
        from heron import _fs

        _fs.atomic_write_bytes(path, data)
    return data


# ===================================================================== finding D_ref
REPLAY_SUFFIX = "-full-replay"
_REFERENCE_KEYS = ("saco_reference", "replay_reference", "reference_dataset", "reference", "replay")


def find_suite_reference(dataset_path: str | os.PathLike) -> tuple[Path | None, str]:
    """(path of D_ref, note) for a dataset inside a suite (ROOT/SUITE/<dataset>/ with ROOT/SUITE/manifest.json).

    The manifest's own record of the task's replay reference wins; otherwise the sibling named
    `<task>-full-replay`, where the dataset's directory is `<task>-<kind>`. Returns (None, reason) when
    there is no suite or no reference in it. Reads files only.
    """
    path = Path(dataset_path)
    if path.is_file():
        return None, f"{path} is a single file, not a dataset inside a suite: pass --reference"
    suite = path.resolve().parent
    manifest_path = suite / "manifest.json"
    if not manifest_path.is_file():
        return None, (f"no reference dataset: {path} is not inside a suite (no {manifest_path}); "
                      "pass --reference <the task's replay dataset>")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{manifest_path} cannot be read ({err}); pass --reference"
    name = path.resolve().name
    entry = _manifest_entry(manifest, name)
    task = entry.get("task") if entry is not None and isinstance(entry.get("task"), str) else None
    records = [r for r in (entry, _manifest_entry(manifest, task) if task else None) if r is not None]
    for record in records:  # the dataset's own record, then its task's
        for key in _REFERENCE_KEYS:
            value = record.get(key)
            if isinstance(value, dict):
                value = value.get("path") or value.get("name")
            if not isinstance(value, str) or not value:
                continue
            for candidate in (Path(value) if Path(value).is_absolute() else suite / value, suite / Path(value).name):
                if candidate.is_dir() and candidate.resolve() != suite:
                    return candidate, f"suite manifest {manifest_path}"
    # naming convention: <task>-full-replay beside <task>-<kind>; the longest matching task wins
    tasks = sorted((p.name[: -len(REPLAY_SUFFIX)] for p in suite.iterdir()
                    if p.is_dir() and p.name.endswith(REPLAY_SUFFIX)), key=len, reverse=True)
    for t in ([task] if task else []) + tasks:
        if (name == t + REPLAY_SUFFIX or name.startswith(t + "-")) and (suite / (t + REPLAY_SUFFIX)).is_dir():
            return suite / (t + REPLAY_SUFFIX), f"suite {suite.name}: replay dataset of task {t}"
    return None, f"suite {suite} has no replay dataset for {name} (expected a sibling named <task>{REPLAY_SUFFIX}); pass --reference"


def card_for(path: str | os.PathLike, reference: str | os.PathLike | None = None, *, bins: int = DEFAULT_BINS):
    """(dataset, card, reference dataset or None) for the dataset at `path`; the SACo reference is
    `reference`, else the suite's replay dataset when `path` lies in a suite (else the card says
    why SACo is missing)."""
    from heron.data.minari_io import load_dataset, resolve_dataset_path

    path = resolve_dataset_path(path)
    ds = load_dataset(path)
    ref, label, missing = None, None, None
    if reference is not None:
        ref_path = resolve_dataset_path(reference)
        ref, label = load_dataset(ref_path), str(ref_path)
    else:
        ref_path, note = find_suite_reference(path)
        if ref_path is None:
            missing = note
        else:
            try:  # a broken or mismatched sibling should not hide the rest of the card
                ref, label = load_dataset(ref_path), f"{ref_path} ({note})"
                check_reference(ds, ref)
            except HeronError as err:
                ref, missing = None, f"the suite's reference {ref_path} is unusable: {err}"
    card = dataset_card(ds, ref, bins=bins, reference_label=label, reference_missing=missing)
    card["path"] = str(path)
    return ds, card, ref


def write_card(ds: EpisodeDataset, card: dict, reference: EpisodeDataset | None, out: str | os.PathLike,
               stem: str = "card") -> None:
    """OUT/<stem>.png, <stem>.md and <stem>.json (the JSON last: a reader that sees it sees a complete card)."""
    from heron import _fs

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _fs.atomic_write_bytes(out / f"{stem}.png", plot_card(ds, card, None, reference))
        _fs.atomic_write_bytes(out / f"{stem}.md", card_markdown(card, f"{stem}.png").encode())
        _fs.atomic_write_bytes(out / f"{stem}.json", (card_json(card) + "\n").encode())
    except OSError as err:
        raise HeronError(f"cannot write the card to {out} ({err.strerror or err}); pick a writable --out directory") from None


def _manifest_entry(manifest, name: str) -> dict | None:
    """The manifest record of dataset `name` (a dict naming it by name/path/id), searched recursively."""
    stack = [manifest]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("name", "dataset", "path", "dir", "id"):
                value = node.get(key)
                if isinstance(value, str) and (value == name or Path(value).name == name):
                    return node
            stack.extend(node.values())
            # {"datasets": {"<name>": {...}}}: the key is the name
            for key, value in node.items():
                if key == name and isinstance(value, dict):
                    return value
        elif isinstance(node, list):
            stack.extend(node)
    return None
