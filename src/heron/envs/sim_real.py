"""Sim/real pairs: the same task with changed physics, for learning from a simulator plus data
from the real system (H2O, `heron train h2o`).

Each "real" system is a registered Gymnasium id whose simulator is the stock env:

| real system (collect the dataset, evaluate) | simulator (`--env`) | what differs |
|---|---|---|
| `heron/Pendulum-real-v0` | `Pendulum-v1` | gravity g = 15 instead of 10 |
| `heron/HalfCheetah-real-v0` | `HalfCheetah-v5` | gravity halved: the simulator's is 2× the real one (H2O's "gravity" gap) |
| `heron/Hopper-real-v0` | `Hopper-v5` | torso mass doubled |

Everything else (observations, actions, rewards, time limits) is the simulator's, so a dataset
from one fits the other. A policy trained in the simulator alone loses much of its return on the
real system (Pendulum: SAC trained 8000 steps in Pendulum-v1 scores about −200 there and about
−1150 on `heron/Pendulum-real-v0`, where SAC trained in it reaches about −250). Typical use, with
the real data of `heron data suite make sim-real` (D4RL-style datasets of the real systems):

    heron train h2o --dataset sim-real/pendulum-real-medium --env Pendulum-v1 \\
        --eval-env heron/Pendulum-real-v0 --steps 0 --online-steps 20000

The shipped suite sim-to-real-quick sets H2O against the same learner without its dynamics-aware
parts and against the real data alone.

Importing `heron.envs` registers the ids.
"""

import gymnasium as gym

REAL_PENDULUM_G = 15.0
"""Gravity of `heron/Pendulum-real-v0` (Pendulum-v1: 10)."""
REAL_HALFCHEETAH_GRAVITY_SCALE = 0.5
"""`heron/HalfCheetah-real-v0`'s gravity relative to HalfCheetah-v5's."""
REAL_HOPPER_TORSO_MASS_SCALE = 2.0
"""`heron/Hopper-real-v0`'s torso mass relative to Hopper-v5's."""


def make_pendulum_real(**kwargs) -> gym.Env:
    """Pendulum-v1's dynamics with g = REAL_PENDULUM_G (Gymnasium's `g` argument)."""
    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    return PendulumEnv(**{"g": REAL_PENDULUM_G, **kwargs})


def _mujoco(base_id: str, gravity_scale: float = 1.0, body: str | None = None, mass_scale: float = 1.0,
            **kwargs) -> gym.Env:
    """`base_id`'s unwrapped MuJoCo env with its model's gravity and one body's mass scaled (the model
    is not rebuilt on reset, so the change lasts for the env's life)."""
    env = gym.make(base_id, **kwargs).unwrapped
    model = env.model
    model.opt.gravity[:] = model.opt.gravity * gravity_scale
    if body is not None:
        model.body_mass[model.body(body).id] *= mass_scale
    return env


def make_halfcheetah_real(**kwargs) -> gym.Env:
    return _mujoco("HalfCheetah-v5", gravity_scale=REAL_HALFCHEETAH_GRAVITY_SCALE, **kwargs)


def make_hopper_real(**kwargs) -> gym.Env:
    return _mujoco("Hopper-v5", body="torso", mass_scale=REAL_HOPPER_TORSO_MASS_SCALE, **kwargs)


def pendulum_real_jax():
    """The pure-JAX twin of `heron/Pendulum-real-v0` (for collecting data in one compiled call)."""
    import dataclasses

    from heron.envs.jax_envs import Pendulum

    return dataclasses.replace(Pendulum(), g=REAL_PENDULUM_G)


def register() -> None:
    """Register the real systems' ids (idempotent)."""
    for env_id, entry, steps in (("heron/Pendulum-real-v0", "make_pendulum_real", 200),
                                 ("heron/HalfCheetah-real-v0", "make_halfcheetah_real", 1000),
                                 ("heron/Hopper-real-v0", "make_hopper_real", 1000)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"heron.envs.sim_real:{entry}", max_episode_steps=steps)
