"""Algorithms, one module each; importing this package registers them all."""

from heron.agents.registry import AgentSpec, available, get_agent, register  # noqa: F401
from heron.agents import ppo  # noqa: F401,E402
from heron.agents import dqn, sac, td3  # noqa: F401,E402
from heron.agents import bc, iql, td3bc  # noqa: F401,E402
from heron.agents import rcsl, riql  # noqa: F401,E402
from heron.agents import awac, cql  # noqa: F401,E402
from heron.agents import fdvl, xql  # noqa: F401,E402
from heron.agents import wsrl  # noqa: F401,E402
from heron.agents import recoil  # noqa: F401,E402
from heron.agents import rlpd  # noqa: F401,E402
from heron.agents import famo2o  # noqa: F401,E402
from heron.agents import calql, ro2o  # noqa: F401,E402
from heron.agents import h2o  # noqa: F401,E402
