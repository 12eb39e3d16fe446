import heron  # noqa: F401  (sets XLA_FLAGS before any test creates the JAX backend)
