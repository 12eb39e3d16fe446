"""Fail-fast checks on agent configs shared by several algorithms."""

from heron.errors import HeronError


def check_loop_settings(cfg) -> None:
    """Fail fast on loop settings and coefficients that cannot work (shared by the off-policy agents)."""
    name = type(cfg).__module__.rsplit(".", 1)[-1]
    for field in ("num_envs", "buffer_size", "batch_size", "train_frequency", "gradient_steps"):
        if getattr(cfg, field) < 1:
            raise HeronError(f"{name}: {field} must be >= 1, got {getattr(cfg, field)}")
    if cfg.learning_starts < 0:
        raise HeronError(f"{name}: learning_starts must be >= 0, got {cfg.learning_starts}")
    if not 0.0 <= cfg.gamma <= 1.0:
        raise HeronError(f"{name}: gamma must be in [0, 1], got {cfg.gamma}")
    if not 0.0 < cfg.tau <= 1.0:
        raise HeronError(f"{name}: tau must be in (0, 1], got {cfg.tau}")
