"""A split server: front-end processes doing the transport work for one engine process that
owns the models (server/split/supervisor.py)."""
