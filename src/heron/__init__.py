"""heron: deep reinforcement learning from every source of experience.

Layers (data flows downward only): cli -> experiments -> loops -> agents -> core;
data, envs and tracking sit beside the core. See docs/architecture.md.
"""

import os

# jaxlib 0.10.2's CPU runtime intermittently hangs forever (every XLA worker idle, the main
# thread waiting on a result) on heron's vmapped compiled loop. heron's mitigations: single-threaded
# Eigen here and synchronous dispatch below (name the flag in XLA_FLAGS yourself to choose
# otherwise). It no longer sets --xla_cpu_use_thunk_runtime=false: jaxlib 0.10.2 ignores that flag
# (the same executable with either value) and warned about it on every command. Must run before
# JAX creates its CPU backend.
_xla_flags = os.environ.get("XLA_FLAGS", "")
if "xla_cpu_multi_thread_eigen" not in _xla_flags:
    _xla_flags += " --xla_cpu_multi_thread_eigen=false"
os.environ["XLA_FLAGS"] = _xla_flags.strip()

import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402

# The CPU backend's asynchronous dispatch has a known lost-wakeup hang (jax-ml/jax#25861);
# we saw it here too, with Eigen threading off, in the compiled loop's resume test (every
# XLA worker idle, the main thread waiting on a result). heron syncs on results between
# chunks and env steps anyway, so dispatching synchronously costs little. The option has no
# environment variable, and importing JAX takes most of a second, so it is set the moment JAX
# is imported: commands that need no JAX (`heron runs`, `heron bench list` ...) never load it.
_ASYNC_DISPATCH = "jax_cpu_enable_async_dispatch"


class _ConfigureJaxOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "jax":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from coming back here
        spec = importlib.util.find_spec("jax")
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                module.config.update(_ASYNC_DISPATCH, False)

            spec.loader.exec_module = exec_module
        return spec


if "jax" in sys.modules:
    sys.modules["jax"].config.update(_ASYNC_DISPATCH, False)
else:
    sys.meta_path.insert(0, _ConfigureJaxOnImport())

__version__ = "0.1.0"
