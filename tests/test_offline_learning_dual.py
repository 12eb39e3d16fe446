"""XQL and f-DVL learn from the mixed, mostly low-return Pendulum-v1 dataset (the protocol of
tests/test_offline_learning.py: tests/offline_data.py's `mixed_dataset()`, 15000 updates, 64x64
networks, 2 seeds vmapped, the mean normalised score of the last two of four evaluations of 20
episodes) and beat behaviour cloning, run here on the same data.

Configs are the published defaults but for the network widths and the cosine schedule's length
(as the IQL/TD3+BC test), and f-DVL's batch: 256 instead of the authors' 1024 (their script's
default, not a tuned value) to keep this file within minutes on 2 cores.
Measured on an AMD EPYC (scores at 15000 updates, mean of the last two evaluations x 2 seeds x
20 episodes): BC 17.8, f-DVL (chi_square) 78.4, XQL 116.3. About 3 minutes on 2 cores.
"""

import numpy as np
import pytest
from offline_data import ENV_ID, mixed_dataset

from heron.agents import get_agent
from heron.loops import offline

pytestmark = pytest.mark.learning

UPDATES = 15_000
HIDDEN = (64, 64)  # small networks keep the file within minutes on 2 cores; the algorithms are unchanged
RUNS = {"bc": {}, "xql": {}, "fdvl": {"batch_size": 256}}


@pytest.fixture(scope="module")
def dataset():
    ds, info = mixed_dataset()
    assert info["good_return"] > info["random_return"] + 300, info  # the mixture really has two levels
    return ds


@pytest.fixture(scope="module")
def scores(dataset):
    """Mean normalised score of the last two evaluations, both seeds, per algorithm."""
    out = {}
    for algo, extra in RUNS.items():
        spec = get_agent(algo)
        fields = spec.config.__dataclass_fields__
        kw = {f: HIDDEN for f in ("actor_hidden", "critic_hidden", "value_hidden") if f in fields}
        if "total_updates" in fields:
            kw["total_updates"] = UPDATES  # the cosine schedule spans the run, as `heron train` sets it
        result = offline.train(spec, spec.config(**kw, **extra), dataset, UPDATES, seeds=2, seed=0, env_id=ENV_ID,
                               eval_every=UPDATES // 4, eval_episodes=20)
        assert result.normalized_scores.shape == (4, 2)
        out[algo] = float(np.mean(result.normalized_scores[-2:]))
    return out


@pytest.mark.parametrize("algo, threshold", [("xql", 60.0), ("fdvl", 45.0)])
def test_dual_value_methods_reach_score_and_beat_bc(scores, algo, threshold):
    assert scores[algo] >= threshold, scores
    assert scores[algo] >= scores["bc"] + 15.0, scores


def test_bc_imitates_the_mixture(scores):
    assert 0.0 < scores["bc"] < 50.0, scores
