"""Load tests and benchmark sweeps for deepserve (extra `loadtest`)."""
