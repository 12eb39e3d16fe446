"""Creating Gymnasium environments with one clear error for a bad env id."""

import difflib

import gymnasium as gym

from heron.errors import HeronError


def check_env_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise HeronError(f"unknown environment {env_id!r}: {hint}use a registered Gymnasium id such as CartPole-v1 or Pendulum-v1")


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env with Gymnasium 1.x SAME_STEP autoreset.

    When an episode ends, the step returns the reset observation and puts the true final
    observation in `info["final_obs"]`, so no step is wasted on resets and the host loop can
    store the exact transition (see `heron.loops.online_host`).
    """
    check_env_id(env_id)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})


def make_env(env_id: str) -> gym.Env:
    check_env_id(env_id)
    return gym.make(env_id)
