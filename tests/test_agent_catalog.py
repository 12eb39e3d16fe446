"""The agent catalog: listing algorithms reads their modules' source and imports none of them (nor JAX)."""

import subprocess
import sys
from pathlib import Path

import pytest

from heron.agents.registry import (
    AgentSpec,
    agent_info,
    available,
    catalog,
    get_agent,
    register,
)
from heron.errors import HeronError


@pytest.mark.parametrize("name", sorted(catalog()))
def test_the_catalog_says_what_the_registered_agent_says(name):
    info, spec = catalog()[name], get_agent(name)
    assert (spec.name, spec.family, spec.action_kinds, spec.summary) == (
        info.name, info.family, info.action_kinds, info.summary)
    assert spec.config.__module__ == info.module  # each agent defines its own config
    assert info.module == f"heron.agents.{name}"  # get_agent imports heron/agents/NAME.py without the catalog


def test_every_agent_module_is_in_the_catalog():
    import heron.agents

    registering = {p.stem for p in Path(heron.agents.__file__).parent.glob("*.py")
                   if p.name != "registry.py" and "register(AgentSpec(" in p.read_text(encoding="utf-8")}
    assert registering == {info.module.rpartition(".")[2] for info in catalog().values()}
    assert len(catalog()) == len(registering) >= 19


def test_an_unknown_name_lists_the_known_ones_and_a_run_time_agent_joins_them():
    with pytest.raises(HeronError, match="unknown algorithm 'iqll': did you mean 'iql'"):
        get_agent("iqll")
    iql = get_agent("iql")
    with pytest.raises(ValueError, match="'cql' is heron's own"):
        register(AgentSpec(name="cql", config=iql.config, init=iql.init, update=iql.update, act=iql.act,
                           family="offline", action_kinds=frozenset({"continuous"}), summary="not CQL"))
    try:
        register(AgentSpec(name="my-iql", config=iql.config, init=iql.init, update=iql.update, act=iql.act,
                           family="offline", action_kinds=frozenset({"continuous"}), summary="a user's agent"))
        assert "my-iql" in available() and agent_info("my-iql").summary == "a user's agent"
        assert get_agent("my-iql").update is iql.update
    finally:
        from heron.agents import registry

        registry._REGISTRY.pop("my-iql", None)


def test_listing_algorithms_and_suites_imports_no_agent_and_no_jax():
    code = ("import sys; from heron.cli.main import main; main(['algos']); main(['bench', 'list']); "
            "assert 'jax' not in sys.modules, 'jax imported'; "
            "assert not [m for m in sys.modules if m.startswith('heron.agents.') and m != 'heron.agents.registry']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert set(catalog()) <= listed
