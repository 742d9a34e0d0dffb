"""The bytes gRPC calls in flight may hold, in process: per connection and in all, a call alone
always admitted, and everything given back when calls end, however they end."""

from __future__ import annotations

import pytest

from deepserve.server.grpc.admission import MIB, RequestBytes
from deepserve.server.protocol.errors import ServerBusy


def test_calls_past_the_budgets_are_refused_and_bytes_come_back() -> None:
    budget = RequestBytes(total_limit=100 * MIB, connection_limit=60 * MIB)
    with budget.hold("a", 50 * MIB):
        per_connection = r"this connection's .* 60 MiB a connection"
        with pytest.raises(ServerBusy, match=per_connection), budget.hold("a", 20 * MIB):
            pass
        in_all = r"hold 90 MiB; .* limit of 100 MiB"
        with (
            budget.hold("b", 40 * MIB),
            pytest.raises(ServerBusy, match=in_all),
            budget.hold("c", 20 * MIB),
        ):
            pass
        assert budget.held == 50 * MIB
    with budget.hold("a", 500 * MIB):  # alone: bounded by the message limit, not this
        assert budget.held == 500 * MIB
    with pytest.raises(RuntimeError), budget.hold("a", MIB):
        raise RuntimeError("the handler failed")
    assert budget.held == 0
