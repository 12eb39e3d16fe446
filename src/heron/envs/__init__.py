"""Environments: Gymnasium (host loop) and pure-JAX ones (compiled loop)."""
