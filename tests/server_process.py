"""The tests start servers with the one launcher the benchmarks and load tests use."""

from loadtests.local_server import RunningServer, free_port, local_server, run_server

__all__ = ["RunningServer", "free_port", "local_server", "run_server"]
