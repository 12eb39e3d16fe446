"""Network initialisations: Flax's default and PyTorch's nn.Linear default (TD3+BC's and CQL's)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heron.agents import get_agent
from heron.core.networks import DeterministicActor, Ensemble, GaussianHead, QNetwork
from heron.errors import HeronError


def _layers(params):
    return params["params"]["MLP_0"]


def test_torch_init_draws_weights_and_biases_uniformly_within_one_over_root_fan_in():
    params = DeterministicActor((256, 256), 6, weight_init="torch").init(jax.random.PRNGKey(0), jnp.zeros((1, 17)))
    for name, fan_in in (("Dense_0", 17), ("Dense_1", 256), ("Dense_2", 256)):
        bound = 1.0 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            x = np.asarray(_layers(params)[name][leaf])
            assert np.abs(x).max() <= bound, (name, leaf)
            # a uniform on [-b, b] has std b/sqrt(3): far from LeCun's 1/sqrt(fan_in) and from zero biases
            assert x.std() == pytest.approx(bound / np.sqrt(3), rel=0.15), (name, leaf)


def test_lecun_init_keeps_zero_biases_and_unit_fan_in_variance():
    params = DeterministicActor((256, 256), 6).init(jax.random.PRNGKey(0), jnp.zeros((1, 17)))
    hidden = _layers(params)["Dense_1"]
    assert not np.asarray(hidden["bias"]).any()
    assert np.asarray(hidden["kernel"]).std() == pytest.approx(1 / np.sqrt(256), rel=0.1)


def test_the_critic_ensemble_passes_the_init_to_every_member():
    critic = Ensemble(QNetwork, 2, {"hidden": (64, 64), "weight_init": "torch"})
    params = critic.init(jax.random.PRNGKey(1), jnp.zeros((1, 3)), jnp.zeros((1, 1)))
    biases = [np.asarray(b) for b in jax.tree.leaves(params) if b.ndim == 2 and b.shape[0] == 2 and b.shape[1] == 64]
    assert biases and all(b.any() for b in biases)


def test_td3bc_defaults_to_the_authors_torch_init_and_refuses_an_unknown_one():
    config = get_agent("td3bc").config
    assert config().weight_init == "torch"
    with pytest.raises(HeronError, match="weight_init must be one of lecun, torch"):
        config(weight_init="xavier")


def test_the_gaussian_policy_passes_the_init_to_its_torso_and_both_heads():
    params = GaussianHead((64, 64), 3, weight_init="torch").init(jax.random.PRNGKey(2), jnp.zeros((1, 11)))["params"]
    for head in ("Dense_0", "Dense_1"):  # mean and log σ, fed by the 64-wide torso
        bias = np.asarray(params[head]["bias"])
        assert bias.any() and np.abs(bias).max() <= 1 / np.sqrt(64), head
    assert np.asarray(params["MLP_0"]["Dense_0"]["bias"]).any()
    lecun = GaussianHead((64, 64), 3).init(jax.random.PRNGKey(2), jnp.zeros((1, 11)))["params"]
    assert not np.asarray(lecun["Dense_0"]["bias"]).any()


def test_cql_defaults_to_its_reference_codes_torch_init_while_calql_and_wsrl_keep_flaxs():
    assert get_agent("cql").config().weight_init == "torch"
    assert get_agent("calql").config().weight_init == "lecun"
    assert get_agent("wsrl").config().weight_init == "lecun"
    with pytest.raises(HeronError, match="cql: weight_init must be one of lecun, torch"):
        get_agent("cql").config(weight_init="orthogonal")
