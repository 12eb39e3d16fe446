"""Subsample a dataset by whole episodes, and mix several sources (D5RL-style mixed-source datasets).

Mixing D5RL-style means: a dataset made of episodes from several sources of the same task (e.g.
expert demonstrations with play or random data), each source contributing a chosen fraction of
its episodes. Provenance keeps every source's name and full provenance, and the fractions.
"""

from __future__ import annotations

import jax
import numpy as np

from heron.data.dataset import EpisodeDataset, concatenate
from heron.data.transforms._common import (
    as_key,
    check_fraction,
    check_positive,
    seed_of,
    step,
)
from heron.errors import HeronError


def subsample_indices(ds: EpisodeDataset, key, *, episodes: int | None = None, fraction: float | None = None,
                      transitions: int | None = None) -> np.ndarray:
    """Sorted episode indices: a random `episodes` count, `fraction` of the episodes, or a random
    prefix of a shuffle whose total length is the closest to `transitions` (whole episodes)."""
    given = [x is not None for x in (episodes, fraction, transitions)]
    if sum(given) != 1:
        raise HeronError("subsample needs exactly one of episodes=, fraction= or transitions= "
                         "(--episodes N, --fraction F or --transitions N)")
    order = np.asarray(jax.random.permutation(as_key(key), ds.num_episodes))
    if episodes is not None:
        k = check_positive("episodes", episodes, integer=True)
        if k > ds.num_episodes:
            raise HeronError(f"cannot take {k} episodes from dataset {ds.name!r}, which has {ds.num_episodes}")
    elif fraction is not None:
        k = round(check_fraction("fraction", fraction, allow_zero=False) * ds.num_episodes)
        if k == 0:
            raise HeronError(f"fraction {fraction} of {ds.num_episodes} episodes rounds to none; give a larger fraction")
    else:
        target = check_positive("transitions", transitions, integer=True)
        if target > ds.num_transitions:
            raise HeronError(f"cannot take {target} transitions from dataset {ds.name!r}, which has {ds.num_transitions}")
        cum = np.cumsum(ds.episode_lengths[order])
        # the count of whole episodes whose total is nearest the target (ties: fewer transitions)
        k = int(np.argmin(np.abs(np.concatenate([[0], cum]) - target)))
        k = max(k, 1)
    return np.sort(order[:k])


def subsample(ds: EpisodeDataset, seed=0, *, episodes: int | None = None, fraction: float | None = None,
              transitions: int | None = None) -> EpisodeDataset:
    """A random subset of whole episodes (by count, fraction, or transitions rounded to episodes)."""
    chosen = subsample_indices(ds, seed, episodes=episodes, fraction=fraction, transitions=transitions)
    out = ds.select_episodes(chosen)
    requested = {k: v for k, v in (("episodes", episodes), ("fraction", fraction), ("transitions", transitions))
                 if v is not None}
    return out.with_step(step("subsample", seed=seed_of(seed), requested=requested, source_episodes=ds.num_episodes,
                              source_transitions=ds.num_transitions, episodes=out.num_episodes,
                              transitions=out.num_transitions))


def mix(sources: list[tuple[EpisodeDataset, float]], seed=0, *, name: str = "mixed") -> EpisodeDataset:
    """Episodes from several sources, `fraction` of each source's episodes (1.0 = all), in source order.

    Spaces must match. Weights reset to uniform (re-weight the mix afterwards if wanted).
    Provenance: a "sources" entry with each source's (subsampled) provenance, then the mix step.
    """
    if not sources:
        raise HeronError("mix needs at least one source: `heron data mix OUT SRC[:FRACTION] ...`")
    key = as_key(seed)
    parts, summary = [], []
    for i, (ds, fraction) in enumerate(sources):
        f = check_fraction(f"fraction of source {i} ({ds.name!r})", fraction, allow_zero=False)
        if i and (ds.observation_space != sources[0][0].observation_space or ds.action_space != sources[0][0].action_space):
            first = sources[0][0]
            raise HeronError(f"cannot mix {first.name!r} and {ds.name!r}: their spaces differ ({first.observation_space}, "
                             f"{first.action_space} vs {ds.observation_space}, {ds.action_space}); mix data of one task")
        part = ds if f == 1.0 else subsample(ds, jax.random.fold_in(key, i), fraction=f)
        parts.append(part)
        summary.append({"name": ds.name, "fraction": f, "episodes": part.num_episodes,
                        "transitions": part.num_transitions})
    total = sum(p.num_transitions for p in parts)
    for s in summary:
        s["share_of_transitions"] = s["transitions"] / total
    return concatenate(parts, name=name, provenance_step=step("mix", seed=seed_of(seed), sources=summary,
                                                              episodes=sum(p.num_episodes for p in parts),
                                                              transitions=total))
