"""AWAC learns from the mixed, mostly low-return Pendulum-v1 dataset (tests/offline_data.py) and beats
behaviour cloning, under tests/test_offline_learning.py's protocol: compiled offline loop, 64x64
networks, 2 seeds vmapped, 15000 updates, score = mean of the last two evaluations x 2 seeds x 20
episodes (0 = the random episodes' mean return, 100 = the SAC episodes').

Measured on an AMD EPYC (2 cores): BC 17.8, AWAC 150.0 (above 100: the deterministic policy beats the
stochastic SAC episodes it learns from). About 1.5 minutes. CQL is ~10x slower per update (3N = 30
sampled actions per state through both critics) and has its own file, tests/test_offline_learning_cql.py.
"""

import numpy as np
import pytest
from offline_data import ENV_ID, mixed_dataset

from heron.agents import get_agent
from heron.loops import offline

pytestmark = pytest.mark.learning

UPDATES = 15_000
HIDDEN = (64, 64)  # small networks keep the file within minutes on 2 cores; the algorithms are unchanged


@pytest.fixture(scope="module")
def scores():
    ds, info = mixed_dataset()
    assert info["good_return"] > info["random_return"] + 300, info  # the mixture really has two levels
    out = {}
    for algo in ("bc", "awac"):
        spec = get_agent(algo)
        fields = spec.config.__dataclass_fields__
        kw = {f: HIDDEN for f in ("actor_hidden", "critic_hidden") if f in fields}
        result = offline.train(spec, spec.config(**kw), ds, UPDATES, seeds=2, seed=0, env_id=ENV_ID,
                               eval_every=UPDATES // 4, eval_episodes=20)
        assert result.normalized_scores.shape == (4, 2)
        out[algo] = float(np.mean(result.normalized_scores[-2:]))
    return out


def test_awac_reaches_score_and_beats_bc(scores):
    assert scores["awac"] >= 80.0, scores
    assert scores["awac"] >= scores["bc"] + 15.0, scores
    assert 0.0 < scores["bc"] < 50.0, scores  # BC clones mostly random behaviour
