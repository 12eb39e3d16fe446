"""Training loops: they drive an agent through the agent contract (init / update / act) only.

* `online_host`: Gymnasium vector envs on the host, jitted `act` / `update`.
* `online_jax`: pure-JAX envs and the agent in one compiled program, `vmap`-ed over seeds.

Loops report progress through callbacks; they never print or write files themselves.
"""
