"""Algorithms, one module each. Each module registers its agent when imported; `get_agent(name)`
imports the one it needs, and `available()` / `agent_info(name)` list them without importing any
(see registry.catalog)."""

from heron.agents.registry import AgentSpec, agent_info, available, get_agent, register  # noqa: F401
