"""Trajectory re-weighting: return-weighting (RW) and advantage-weighting (AW).

Hong, Agrawal, Tachet des Combes, Laroche, "Harnessing Mixed Offline Reinforcement Learning
Datasets via Trajectory Weighting" (ICLR 2023), checked against the authors' code
(github.com/Improbable-AI/harness-offline-rl: `implicit_q_learning/dataset_utils.py` RW/AW,
`JaxCQL/dataset_utils.py`, `weighted.py`):

    RW:  Ĝ_i = (G_i − min_j G_j) / (max_j G_j − min_j G_j)                 returns of trajectories τ_i
         P(transition t of τ_i) = exp(Ĝ_i / α) / Σ_j |τ_j| exp(Ĝ_j / α)    (a softmax over transitions)
    AW:  A_i = G_i − V̂(s_0^i), V̂ a linear regression of G on the initial state s_0 (with intercept);
         Â_i min-max normalised as above; P ∝ exp(Â_i / α)
    α = 0.1 (the paper's temperature; the code's sampler names are RW-0.1 / AW-0.1).

Every transition of a trajectory gets the trajectory's weight, so a trajectory's total mass is
|τ_i| exp(·/α), as in the code's per-transition softmax. λ mixes the result with uniform sampling,
P = λ·P_w + (1 − λ)/N; the released code samples purely by weight (λ = 1, the default here).
The result is stored as `episode_weights` (the per-transition probability of each episode's
transitions, summing to 1 over transitions), which `to_device()` / `sample_transitions` use.
"""

from __future__ import annotations

import numpy as np

from heron.data.dataset import EpisodeDataset
from heron.data.transforms._common import check_fraction, check_positive, derive, step
from heron.errors import HeronError

PAPER = "Hong et al. 2023, Harnessing Mixed Offline RL Datasets via Trajectory Weighting"
WEIGHTINGS = ("return", "advantage")


def minmax(x: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min); all zeros when x is constant (every trajectory equally good)."""
    x = np.asarray(x, np.float64)
    span = x.max() - x.min() if x.size else 0.0
    return np.zeros_like(x) if span <= 0 else (x - x.min()) / span


def initial_state_baseline(ds: EpisodeDataset) -> np.ndarray:
    """V̂(s_0^i): least-squares linear regression of the returns G_i on the initial states (AW's baseline)."""
    s0 = ds.observations[ds.episode_starts[:-1] + np.arange(ds.num_episodes)].reshape(ds.num_episodes, -1)
    x = np.concatenate([s0.astype(np.float64), np.ones((ds.num_episodes, 1))], axis=1)
    coef, *_ = np.linalg.lstsq(x, ds.episode_returns(), rcond=None)
    return x @ coef


def trajectory_scores(ds: EpisodeDataset, by: str) -> np.ndarray:
    """The min-max normalised score of every trajectory: Ĝ_i (RW) or Â_i (AW)."""
    if by == "return":
        return minmax(ds.episode_returns())
    if by == "advantage":
        return minmax(ds.episode_returns() - initial_state_baseline(ds))
    raise HeronError(f"unknown weighting {by!r}: use 'return' (RW) or 'advantage' (AW)")


def trajectory_weights(ds: EpisodeDataset, by: str = "return", temperature: float = 0.1,
                       uniform_mix: float = 1.0) -> np.ndarray:
    """[E] per-transition sampling probability of each episode's transitions (Σ_e |τ_e| w_e = 1)."""
    alpha = check_positive("temperature α", temperature)
    lam = check_fraction("uniform_mix λ", uniform_mix)
    score = trajectory_scores(ds, by) / alpha
    lengths = ds.episode_lengths.astype(np.float64)
    # log-space softmax over transitions: exp(Ĝ/α) overflows for small α
    top = score.max()
    log_p = score - (top + np.log(np.sum(lengths * np.exp(score - top))))
    return lam * np.exp(log_p) + (1.0 - lam) / ds.num_transitions


def reweight(ds: EpisodeDataset, by: str = "return", temperature: float = 0.1, uniform_mix: float = 1.0,
             seed: int | None = None) -> EpisodeDataset:
    """RW (`by="return"`) or AW (`by="advantage"`) trajectory weights with temperature α and mix λ.

    Deterministic (`seed` is only recorded, for a uniform CLI). Replaces existing weights.
    Provenance records α, λ, and the effective sample size 1/Σ_t P_t² of the transition
    distribution, and the share of the probability mass on the top 10% of trajectories.
    """
    if by not in WEIGHTINGS:
        raise HeronError(f"unknown weighting {by!r}: use --by return (RW) or --by advantage (AW)")
    w = trajectory_weights(ds, by, temperature, uniform_mix)
    lengths = ds.episode_lengths
    mass = w * lengths  # each trajectory's share of the sampling distribution
    top = max(1, int(np.ceil(0.1 * ds.num_episodes)))
    info = {"effective_sample_size": float(1.0 / np.sum(w ** 2 * lengths)),
            "top10pct_trajectory_mass": float(np.sort(mass)[::-1][:top].sum()),
            "uniform_top10pct_mass": float(np.sort(lengths)[::-1][:top].sum() / ds.num_transitions),
            "max_over_min_weight": float(w.max() / w.min())}
    out = derive(ds, episode_weights=w)
    return out.with_step(step("reweight", paper=PAPER, by=by, method={"return": "RW", "advantage": "AW"}[by],
                              temperature=float(temperature), uniform_mix=float(uniform_mix), seed=seed,
                              replaced_existing_weights=ds.episode_weights is not None, **info))
