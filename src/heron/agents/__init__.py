"""Algorithms, one module each; importing this package registers them all."""

from heron.agents.registry import AgentSpec, available, get_agent, register  # noqa: F401
