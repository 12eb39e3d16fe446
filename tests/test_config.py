"""name=value overrides and field docs for frozen config dataclasses."""

from dataclasses import dataclass

import pytest

from heron.config import apply_overrides, config_from_dict, config_to_dict, field_docs
from heron.errors import HeronError


@dataclass(frozen=True)
class Example:
    learning_rate: float = 3e-4
    """Adam step size."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths."""
    layer_norm: bool = False
    """LayerNorm after each hidden layer."""
    batch_size: int = 256
    """Minibatch size."""
    activation: str = "relu"
    """Hidden activation."""
    clip: float | None = None
    """Optional clip."""


def test_overrides_parse_each_type():
    cfg = apply_overrides(Example(), ["learning_rate=1e-3", "hidden=64,32", "layer_norm=true", "batch_size=1e3",
                                      "activation=tanh", "clip=0.5"])
    assert cfg == Example(1e-3, (64, 32), True, 1000, "tanh", 0.5)
    assert apply_overrides(cfg, ["clip=none"]).clip is None
    assert apply_overrides(Example(), ["--batch-size=8"]).batch_size == 8


@pytest.mark.parametrize("token, message", [
    ("learning_rat=1", "unknown config field 'learning_rat': did you mean learning_rate?"),
    ("batch_size=2.5", "bad value '2.5' for batch_size: expected an integer"),
    ("layer_norm=maybe", "bad value 'maybe' for layer_norm: expected true or false"),
    ("learning_rate=fast", "bad value 'fast' for learning_rate: expected float"),
    ("learning_rate", "bad override 'learning_rate': write overrides as name=value"),
])
def test_bad_overrides_name_the_problem(token, message):
    with pytest.raises(HeronError) as err:
        apply_overrides(Example(), [token])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_field_docs_and_round_trip():
    assert field_docs(Example)["hidden"] == "Hidden layer widths."
    assert config_from_dict(Example, config_to_dict(Example(hidden=(8,)))) == Example(hidden=(8,))
    with pytest.raises(HeronError, match="unknown fields"):
        config_from_dict(Example, {"nope": 1})
