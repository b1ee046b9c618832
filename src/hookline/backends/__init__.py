"""Framework adapters.

The engine talks to a task only through :class:`hookline.backends.base.Task`; each backend
module (``numpy``, ``torch``) imports its framework, and nothing imports a backend eagerly.
"""
