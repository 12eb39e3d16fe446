"""RIQL beats IQL on a corrupted dataset; RCSL conditioned on a high return beats BC.

Protocol of tests/test_offline_learning.py: the mixed Pendulum-v1 dataset of tests/offline_data.py
(0 = random episodes' mean return, 100 = the SAC episodes'), 15000 updates, 64x64 networks,
2 seeds, score = mean of the last two evaluations x 2 seeds x 20 episodes.

Corruption: RIQL's random *dynamics* corruption (`corrupt(ds, "dynamics", "random", 0.3, 2.0)`:
30% of the next states get U[−2, 2]·std noise), the setting where the paper finds IQL weakest
(heavy-tailed Q-targets), at twice the paper's scale. RIQL runs with the authors' defaults (K = 5,
α = 0.25, δ = 1, no reward scaling) except the 64x64 networks. Measured on an AMD EPYC, on the shipped
data: scale 2, IQL 16.6 (per seed 9.2, 24.0), RIQL 53.3 (41.9, 64.7); at the paper's scale 1 the gap
was within the seeds' spread (IQL 31.1, 29.5; RIQL 20.0, 43.9), while on the data an Intel Xeon made
itself before the data was shipped it was IQL ≈ 5, RIQL ≈ 34. RCSL 75.3 and BC 17.8 (clean data).
About 4 minutes on 2 cores (RIQL's 5 critics dominate).
"""

import numpy as np
import pytest
from offline_data import ENV_ID, mixed_dataset

from heron.agents import get_agent
from heron.data.transforms import corrupt
from heron.loops import offline

pytestmark = pytest.mark.learning

UPDATES = 15_000
HIDDEN = (64, 64)


@pytest.fixture(scope="module")
def datasets():
    ds, info = mixed_dataset()
    assert info["good_return"] > info["random_return"] + 300, info
    return ds, corrupt(ds, "dynamics", "random", ratio=0.3, scale=2.0, seed=0)


def _score(algo, dataset, **overrides):
    spec = get_agent(algo)
    fields = spec.config.__dataclass_fields__
    kw = {f: HIDDEN for f in ("actor_hidden", "critic_hidden", "value_hidden") if f in fields}
    if "total_updates" in fields:
        kw["total_updates"] = UPDATES
    result = offline.train(spec, spec.config(**kw, **overrides), dataset, UPDATES, seeds=2, seed=0, env_id=ENV_ID,
                           eval_every=UPDATES // 4, eval_episodes=20)
    assert result.normalized_scores.shape == (4, 2)
    return np.mean(result.normalized_scores[-2:], axis=0)  # [seeds]


@pytest.fixture(scope="module")
def scores(datasets):
    clean, corrupted = datasets
    return {"iql_corrupt": _score("iql", corrupted), "riql_corrupt": _score("riql", corrupted),
                "rcsl": _score("rcsl", clean, max_episode_steps=200),  # Pendulum's time limit: ω* = best return / 200
                "bc": _score("bc", clean)}


def test_riql_beats_iql_under_dynamics_corruption(scores):
    # On each seed, and by 15 points on average (measured margin ≈ 37).
    assert np.all(scores["riql_corrupt"] > scores["iql_corrupt"]), scores
    assert scores["riql_corrupt"].mean() >= scores["iql_corrupt"].mean() + 15.0, scores


def test_rcsl_conditioned_on_the_best_return_beats_bc(scores):
    assert scores["rcsl"].mean() >= 40.0, scores
    assert scores["rcsl"].mean() >= scores["bc"].mean() + 15.0, scores
