"""Where the models run: in this process (LocalModels), or in a split server's engine process
fed by front-end processes that do the transport work (EngineModels, the engine, the
supervisor). `hosts.model_host` is the one place that chooses.

May import every room below the edges (core, models, batching, runtime, observability,
protocol, settings); the app assembles it with the edges.
"""
