"""heron: deep reinforcement learning from every source of experience.

Layers (data flows downward only): cli -> experiments -> loops -> agents -> core;
data, envs and tracking sit beside the core. See docs/architecture.md.
"""

import os

# jaxlib 0.10.2's CPU runtime intermittently hangs forever (every XLA worker idle) on
# vmapped while_loop programs such as the compiled loop with --seeds N, when Eigen's
# multi-threaded pool is on; seen here in tests and in benchmarks. Turning that pool off is
# the known workaround. It must happen before JAX creates its CPU backend; set
# --xla_cpu_multi_thread_eigen=true in XLA_FLAGS yourself to opt back in.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import jax  # noqa: E402

# The CPU backend's asynchronous dispatch has a known lost-wakeup hang (jax-ml/jax#25861);
# we saw it here too, with Eigen threading off, in the compiled loop's resume test (every
# XLA worker idle, the main thread waiting on a result). heron syncs on results between
# chunks and env steps anyway, so dispatching synchronously costs little.
jax.config.update("jax_cpu_enable_async_dispatch", False)

__version__ = "0.1.0"
