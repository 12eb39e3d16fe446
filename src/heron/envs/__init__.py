"""Environments: Gymnasium (host loop) and pure-JAX ones (compiled loop)."""

from heron.envs import sim_real

sim_real.register()  # the real systems of the sim/real pairs (heron/Pendulum-real-v0, ...)
