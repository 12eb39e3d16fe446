"""Pure-JAX environments for the compiled loop (gymnax / PureJaxRL style).

Each env reproduces its Gymnasium 1.4 namesake made with `gym.make(env_id)`: the same
dynamics, reward, termination, reset distribution and `TimeLimit` truncation, but as pure
functions over an explicit state, so that `jit`, `lax.scan` and `vmap` see through them.
Arithmetic is float32 (Gymnasium integrates in float64 and casts the observation to
float32), so one step agrees to float32 rounding; long trajectories drift apart the way any
two float precisions do on a chaotic system. Random draws come from JAX keys, so the
*distributions* match Gymnasium's, not the individual samples of a NumPy seed.

Interface (one frozen, hashable dataclass per env, usable as a static argument of `jit`):

    env.observation_space, env.action_space         # gymnasium spaces, as in gym.make
    env.max_episode_steps                           # the TimeLimit
    env.reset(key) -> (env_state, obs)
    env.step(key, env_state, action) -> (env_state, obs, reward, terminated, truncated)
    auto_reset_step(env, key, env_state, action) -> AutoResetStep

`step` returns the TRUE next observation (the final one when the episode ends) and does not
reset; `auto_reset_step` also returns the observation (and state) to continue from, which is
a fresh reset where the episode ended. `truncated` is `elapsed_steps >= max_episode_steps`,
independent of `terminated` (both can be true on the last step), exactly as `TimeLimit`.
All functions act on one env; `vmap` them for a batch.
"""

import difflib
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from heron.errors import HeronError


class AutoResetStep(NamedTuple):
    env_state: Any  # state to continue from (reset where the episode ended)
    obs: jax.Array  # observation to act on next (the reset observation where the episode ended)
    next_obs: jax.Array  # true next observation of this step (the final one on episode end)
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array


def auto_reset_step(env, key: jax.Array, env_state, action, reset=None) -> AutoResetStep:
    """Step, and where the episode ended (terminated or truncated) reset.

    `reset` optionally gives the `(env_state, obs)` to continue from on an episode end, drawn
    beforehand with `env.reset(reset_key)` (a compiled loop draws a whole rollout's resets in
    one batched call, outside its scan; resets do not depend on the state); by default it is
    drawn here from a key split off `key`.
    """
    if reset is None:
        key, reset_key = jax.random.split(key)
        reset = env.reset(reset_key)
    next_state, next_obs, reward, terminated, truncated = env.step(key, env_state, action)
    reset_state, reset_obs = reset
    done = jnp.logical_or(terminated, truncated)
    env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, next_state)
    obs = jnp.where(done, reset_obs, next_obs)
    return AutoResetStep(env_state, obs, next_obs, reward, terminated, truncated)


# ---------------------------------------------------------------------------------------------
# CartPole-v1  (gymnasium/envs/classic_control/cartpole.py, TimeLimit 500)
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class CartPoleState:
    physics: jax.Array  # float32 [x, ẋ, θ, θ̇] (one array: fewer ops per step than four scalars)
    time: jax.Array  # int32 steps taken in this episode (TimeLimit's _elapsed_steps)

    @property
    def x(self):
        return self.physics[..., 0]

    @property
    def x_dot(self):
        return self.physics[..., 1]

    @property
    def theta(self):
        return self.physics[..., 2]

    @property
    def theta_dot(self):
        return self.physics[..., 3]


@dataclass(frozen=True)
class CartPole:
    """Barto, Sutton & Anderson's cart-pole; reward +1 per step including the terminal one."""

    max_episode_steps: int = 500
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02  # seconds between state updates (explicit Euler)
    theta_threshold_radians: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    reset_bound: float = 0.05  # reset state ~ U(-0.05, 0.05)^4

    env_id = "CartPole-v1"

    @property
    def observation_space(self) -> gym.spaces.Box:
        high = np.array([self.x_threshold * 2, np.inf, self.theta_threshold_radians * 2, np.inf], np.float32)
        return gym.spaces.Box(-high, high, dtype=np.float32)

    @property
    def action_space(self) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(2)

    def reset(self, key: jax.Array) -> tuple[CartPoleState, jax.Array]:
        physics = jax.random.uniform(key, (4,), jnp.float32, -self.reset_bound, self.reset_bound)
        return CartPoleState(physics, jnp.zeros((), jnp.int32)), physics

    def step(self, key: jax.Array, state: CartPoleState, action: jax.Array):
        del key  # deterministic dynamics
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        x, x_dot, theta, theta_dot = state.physics[0], state.physics[1], state.physics[2], state.physics[3]
        force = jnp.where(action == 1, self.force_mag, -self.force_mag).astype(jnp.float32)
        costheta, sintheta = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / total_mass))
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        # Explicit Euler: positions with the old velocities, velocities with the accelerations.
        physics = state.physics + self.tau * jnp.stack([x_dot, xacc, theta_dot, thetaacc])
        x, theta = physics[0], physics[2]
        terminated = ((x < -self.x_threshold) | (x > self.x_threshold)
                      | (theta < -self.theta_threshold_radians) | (theta > self.theta_threshold_radians))
        time = state.time + 1
        truncated = time >= self.max_episode_steps
        reward = jnp.ones((), jnp.float32)
        return CartPoleState(physics, time), physics, reward, terminated, truncated


# ---------------------------------------------------------------------------------------------
# Pendulum-v1  (gymnasium/envs/classic_control/pendulum.py, TimeLimit 200)
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class PendulumState:
    physics: jax.Array  # float32 [θ, θ̇]
    time: jax.Array

    @property
    def theta(self):
        return self.physics[..., 0]

    @property
    def theta_dot(self):
        return self.physics[..., 1]


def angle_normalize(x: jax.Array) -> jax.Array:
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


@dataclass(frozen=True)
class Pendulum:
    """Inverted-pendulum swing-up; reward -(θ² + 0.1 θ̇² + 0.001 u²) from the pre-step state."""

    max_episode_steps: int = 200
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0
    reset_theta: float = math.pi  # reset θ ~ U(-π, π)
    reset_theta_dot: float = 1.0  # reset θ̇ ~ U(-1, 1)

    env_id = "Pendulum-v1"

    @property
    def observation_space(self) -> gym.spaces.Box:
        high = np.array([1.0, 1.0, self.max_speed], np.float32)
        return gym.spaces.Box(-high, high, dtype=np.float32)

    @property
    def action_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-self.max_torque, self.max_torque, shape=(1,), dtype=np.float32)

    def _obs(self, physics: jax.Array) -> jax.Array:
        return jnp.stack([jnp.cos(physics[0]), jnp.sin(physics[0]), physics[1]]).astype(jnp.float32)

    def reset(self, key: jax.Array) -> tuple[PendulumState, jax.Array]:
        high = jnp.array([self.reset_theta, self.reset_theta_dot], jnp.float32)
        physics = jax.random.uniform(key, (2,), jnp.float32, -high, high)
        return PendulumState(physics, jnp.zeros((), jnp.int32)), self._obs(physics)

    def step(self, key: jax.Array, state: PendulumState, action: jax.Array):
        del key
        u = jnp.clip(jnp.asarray(action, jnp.float32).reshape(-1)[0], -self.max_torque, self.max_torque)
        th, thdot = state.physics[0], state.physics[1]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        newthdot = thdot + (3 * self.g / (2 * self.l) * jnp.sin(th) + 3.0 / (self.m * self.l**2) * u) * self.dt
        newthdot = jnp.clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * self.dt
        physics = jnp.stack([newth, newthdot])
        time = state.time + 1
        terminated = jnp.zeros((), jnp.bool_)
        truncated = time >= self.max_episode_steps
        return PendulumState(physics, time), self._obs(physics), (-costs).astype(jnp.float32), terminated, truncated


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_JAX_ENVS: dict[str, type] = {"CartPole-v1": CartPole, "Pendulum-v1": Pendulum}


def available_jax_envs() -> list[str]:
    return sorted(_JAX_ENVS)


def make_jax_env(env_id: str):
    """The pure-JAX twin of `gym.make(env_id)`; `HeronError` naming the choices if there is none."""
    if env_id not in _JAX_ENVS:
        close = difflib.get_close_matches(env_id, list(_JAX_ENVS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise HeronError(f"no pure-JAX environment {env_id!r}: {hint}available: {', '.join(available_jax_envs())} "
                         f"(other Gymnasium envs run in the host loop)")
    return _JAX_ENVS[env_id]()
