"""Scale-out on Ray: the same work items (suite cells, tuning trials) as Ray tasks.

Local by default: `workers` > 0 starts a Ray instance on this machine with that many CPU slots
(one task per slot; each task is one heron run). `address` connects to a running cluster instead
("auto", or "ray://host:10001"); heron must be installed on its nodes and the suite's root must
be a path every node sees (a shared file system), since runs are written there. A cluster with
Ray's token authentication (the default for `ray start --head` once ~/.ray/auth_token exists)
takes the token only when asked: set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN or that file.

Fault tolerance: a task whose worker process dies (killed, out of memory, node lost) is retried
up to `max_retries` times by Ray. Work items are idempotent by design — a suite cell resumes its
killed run from the last checkpoint — so a retry continues the run instead of restarting it.
Errors raised by heron itself are not retried (they would fail again). The dashboard, when asked
for, binds to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence

from heron.errors import HeronError

DEFAULT_RETRIES = 3


def _worker_env() -> dict[str, str]:
    """Each task is one single-threaded XLA program, so N tasks share N cores without oversubscribing."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        flags = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    env = {"XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("JAX_PLATFORMS", "HERON_RUNS_DIR", "HERON_DATASETS_DIR", "HERON_BENCH_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def init_ray(workers: int = 0, address: str | None = None, dashboard: bool = False):
    """Start (or connect to) Ray; returns the context. Refuses nonsense before starting anything."""
    import ray

    if workers < 0:
        raise HeronError(f"--workers must be >= 0, got {workers}")
    if ray.is_initialized():
        return ray.get_runtime_context()
    kwargs = {"runtime_env": {"env_vars": _worker_env()}, "logging_level": "ERROR", "log_to_driver": False,
              "include_dashboard": dashboard, "dashboard_host": "127.0.0.1"}
    try:
        with warnings.catch_warnings():
            # Ray starts its processes by fork + exec; JAX's warning about fork in a threaded
            # process concerns fork without exec, so it does not apply.
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            if address:
                return ray.init(address=address, **kwargs)
            # "local": a new instance owned by this process; with no address Ray would join the latest
            # instance on the machine (another suite's or study's), whose slots and lifetime are not ours.
            return ray.init(address="local", num_cpus=max(workers, 1), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        if not address:
            raise HeronError(f"could not start a local Ray instance ({err})") from None
        # Ray says only "failed to connect" when the cluster refuses a client without its token
        auth = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
            "~/.ray/auth_token)")
        raise HeronError(f"could not connect to the Ray cluster at {address} ({err}){auth}; check --ray-address, "
                         "or drop it to run locally") from None


def wait_next(pending: dict) -> tuple[object, object, BaseException | None]:
    """Wait for the first of `pending` ({ObjectRef: item}) Ray tasks to end and pop it:
    (item, result, None), or (item, None, error) when its worker died past its retries. An exception
    raised inside the task is re-raised here as itself."""
    import ray

    (ref,), _ = ray.wait(list(pending), num_returns=1)
    item = pending.pop(ref)
    try:
        return item, ray.get(ref), None
    except ray.exceptions.RayTaskError as err:
        raise err.as_instanceof_cause() from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
        return item, None, err


def ray_map(fn: Callable, items: Sequence[tuple], *, workers: int = 0, address: str | None = None,
            dashboard: bool = False, max_retries: int = DEFAULT_RETRIES,
            on_crash: Callable[[tuple, BaseException], object] | None = None, shutdown: bool = True) -> Iterator:
    """Yield fn(*item) for every item as the Ray tasks finish (completion order).

    A task whose worker died more than `max_retries` times yields on_crash(item, error) (default:
    re-raise). `fn` must be importable by the workers (a module-level function).
    """
    import ray

    init_ray(workers, address, dashboard)
    try:
        remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(fn)
        pending = {remote.remote(*item): item for item in items}
        while pending:
            item, result, crash = wait_next(pending)
            if crash is None:
                yield result
            elif on_crash is None:
                raise crash
            else:
                yield on_crash(item, crash)
    finally:
        if shutdown:
            ray.shutdown()
