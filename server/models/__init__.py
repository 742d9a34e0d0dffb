"""Which models are served: the model repository on disk, config completion and checks,
loaded versions, the manager that loads, swaps and unloads them, and the repository watch.

May import: tasks, batching, runtime, observability, protocol, settings.
"""
