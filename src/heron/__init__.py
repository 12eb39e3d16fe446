"""heron: deep reinforcement learning from every source of experience.

Layers (data flows downward only): cli -> experiments -> loops -> agents -> core;
data, envs and tracking sit beside the core. See docs/architecture.md.
"""

__version__ = "0.1.0"
