"""Return-weighted sampling (RW, Hong et al. 2023) improves TD3+BC on a mostly low-return mix:
5 episodes of a briefly trained SAC among 45 uniform-random ones (tests/offline_data.py). The same
agent, updates and seeds learn once with uniform sampling and once with RW (α = 0.1) weights;
the score is the mean normalised score of the last two evaluations over 2 vmapped seeds."""

import numpy as np
import pytest
from offline_data import ENV_ID, mixed_dataset

from heron.agents import get_agent
from heron.data.transforms.weighting import reweight
from heron.loops import offline

pytestmark = pytest.mark.learning

UPDATES = 10_000


def _score(ds) -> float:
    spec = get_agent("td3bc")
    cfg = spec.config(actor_hidden=(64, 64), critic_hidden=(64, 64))
    result = offline.train(spec, cfg, ds, UPDATES, seeds=2, seed=0, env_id=ENV_ID, eval_every=UPDATES // 4,
                           eval_episodes=20)
    return float(np.mean(result.normalized_scores[-2:]))


def test_return_weighting_improves_td3bc_on_a_mostly_random_mix():
    ds, info = mixed_dataset(good_episodes=5, random_episodes=45)
    assert info["good_return"] > info["random_return"] + 300, info
    weighted = reweight(ds, by="return", temperature=0.1)
    # RW puts most of the sampling mass on the 10% best trajectories (5 of 50 here)
    assert weighted.provenance[-1]["top10pct_trajectory_mass"] > 0.5
    uniform_score, rw_score = _score(ds), _score(weighted)
    print(f"TD3+BC normalised score: uniform {uniform_score:.1f}, RW {rw_score:.1f}")
    assert rw_score >= uniform_score + 15.0, (uniform_score, rw_score)
    assert rw_score >= 60.0, (uniform_score, rw_score)
