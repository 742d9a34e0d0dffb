"""HTTP as an attacker sends it, against a real server: nesting and wrong JSON types, numbers
that are not ASCII, huge and slow headers, more connections than allowed, bodies past the limit
however they are framed, a large body parsed while gRPC keeps answering, and web pages that try
to reach the API through a developer's browser. Each gets a clear 4xx and the server keeps
serving."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton

from ..onnx_models import standard_repository
from ..server_process import RunningServer, free_port, run_server


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A developer's laptop: explicit model control, no tokens, loopback; short HTTP limits."""
    repository = standard_repository(tmp_path_factory.mktemp("hostile") / "models")
    http_port = free_port()
    with run_server(
        repository, tmp_path_factory.mktemp("hostile-logs"), "--http-port", str(http_port),
        "--model-control-mode", "explicit", "--max-message-mb", "1",
        "--http-header-timeout-s", "1", "--http-max-connections", "40",
        "--http-max-header-kb", "16",
    ) as running:  # fmt: skip
        running.http_port = http_port
        yield running


def _request(port: int, raw: bytes, timeout: float = 10) -> tuple[int, str]:
    """Send raw bytes, read the answer until the server closes or it is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
    text = answer.decode("latin-1")
    return (int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1") else 0), text


def _post(
    port: int, path: str, body: bytes, *headers: str, host: str = "localhost"
) -> tuple[int, str]:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}", *headers]
    return _request(port, ("\r\n".join(head) + "\r\n\r\n").encode() + body)


def _ready(server: RunningServer, model: str) -> bool:
    return triton.InferenceServerClient(server.url).is_model_ready(model)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v2/models/negate/infer", b"[" * 1000 + b"]" * 1000, 400, "nests 1000 levels"),
        ("/v2/repository/index", b'{"a":' * 1000 + b"1" + b"}" * 1000, 400, "nests 1000"),
        ("/v2/repository/models/negate/load", b"[" * 5000, 400, "nests 5000 levels"),
        ("/v2/models/negate/infer", b'{"inputs": 5}', 400, "inputs must be a JSON list"),
        ("/v2/models/negate/infer", b'{"inputs": [{"name": [1]}]}', 400, "'name' must be a"),
        ("/v2/models/negate/infer", b'{"outputs": "x", "inputs": []}', 400, "outputs must be"),
        ("/v2/models/negate/versions/" + "9" * 5000 + "/infer", b"{}", 404, "versions are"),
        ("/v2/models/negate/versions/%C2%B2/infer", b"{}", 404, "versions are integers"),
    ],
)
def test_json_and_paths_a_parser_chokes_on_are_client_errors(
    exposed: RunningServer, path: str, body: bytes, status: int, fragment: str
) -> None:
    code, answer = _post(exposed.http_port, path, body, "Content-Type: application/json")
    assert code == status and fragment in answer, answer[:300]
    assert _ready(exposed, "negate")


def test_a_large_head_sent_in_one_block_with_its_body_is_refused(exposed: RunningServer) -> None:
    """The whole request in one send: the parser reads the head and the body at once, so the
    head is measured before parsing (a 70 KB header was let through against a 64 KiB limit)."""
    for padding, expected in ((8_000, 404), (20_000, 431)):  # the limit here: 16 KiB
        status, text = _post(
            exposed.http_port, "/v2/models/nope/infer", b"{}", f"X-Padding: {'a' * padding}"
        )
        assert status == expected, text[:200]
    assert "http_max_header_kb" in text


def test_a_huge_header_is_refused_while_it_arrives(exposed: RunningServer) -> None:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", exposed.http_port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        answer = b""
        try:
            for _ in range(64):  # 4 MiB offered, 64 KiB at a time
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    elapsed = time.perf_counter() - started
    print(f"a header growing to 4 MiB: {answer[:40]!r} after {elapsed:.2f} s")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert (
        _request(exposed.http_port, b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")[0]
        == 200
    )


def test_half_a_header_is_cut_at_the_header_timeout(exposed: RunningServer) -> None:
    started = time.perf_counter()
    code, answer = _request(
        exposed.http_port, b"GET /v2/health/live HTTP/1.1\r\nHost: local", timeout=10
    )
    elapsed = time.perf_counter() - started
    assert code == 408 and "http_header_timeout_s" in answer
    assert 0.8 < elapsed < 5.0
    # a connection that sends nothing at all is closed too
    with socket.create_connection(("127.0.0.1", exposed.http_port), timeout=10) as sock:
        started = time.perf_counter()
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")
        assert time.perf_counter() - started < 5.0


def test_connections_past_the_limit_are_refused_and_grpc_keeps_serving(
    exposed: RunningServer,
) -> None:
    # 150: a split server's front ends each take a share of them, past each one's 40
    idle = [socket.create_connection(("127.0.0.1", exposed.http_port)) for _ in range(150)]
    try:
        time.sleep(0.3)
        code, answer = _request(
            exposed.http_port, b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        assert code == 503 and "open connections" in answer
        assert triton.InferenceServerClient(exposed.url).is_server_live()
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    ok = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert _request(exposed.http_port, ok)[0] == 200


def test_bodies_past_the_limit_are_refused_however_they_are_framed(exposed: RunningServer):
    """1 MiB is this server's limit: a chunked multipart form of 3 MiB is cut as it streams."""
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = part + b"\x00" * (3 << 20) + f"\r\n--{boundary}--\r\n".encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536])
        for i in range(0, len(body), 65536)
    )
    head = (
        "POST /v1/models/mnist/classify HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    code, answer = _request(exposed.http_port, head + chunks + b"0\r\n\r\n")
    assert code == 400 and "max_message_mb" in answer, answer[:300]


def test_large_json_bodies_cannot_stall_the_server(exposed: RunningServer, tmp_path: Path):
    """Python's JSON parser holds the interpreter for a whole document: a 57 MiB body is refused
    from its size, one just under max_json_mb (8 MiB) is parsed while gRPC keeps answering."""
    code, answer = _post(exposed.http_port, "/v2/models/negate/infer", b"[0]" * (3 << 20))
    assert code == 400 and "max_message_mb" in answer  # this server's limit is 1 MiB
    repository = standard_repository(tmp_path / "models")
    http_port = free_port()
    with run_server(repository, tmp_path, "--http-port", str(http_port)) as server:
        values = b",".join([b"0.125"] * 10_000_000)
        code, answer = _post(http_port, "/v2/models/negate/infer", b"{" + values + b"}")
        assert code == 400 and "max_json_mb" in answer and "binary data" in answer
        values = b",".join([b"0.125"] * 1_350_000)
        body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[' + values + b"]}]}"
        result: list[tuple[int, str]] = []
        sender = threading.Thread(
            target=lambda: result.append(_post(http_port, "/v2/models/negate/infer", body))
        )
        client = triton.InferenceServerClient(server.url)
        gaps, sender_started = [], time.perf_counter()
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert client.is_server_live()
            gaps.append(time.perf_counter() - started)
            time.sleep(0.02)
        sender.join()
        total = time.perf_counter() - sender_started
    print(f"{len(body) >> 20} MiB JSON body answered in {total:.2f} s; gRPC ServerLive slowest "
          f"{max(gaps) * 1000:.0f} ms over {len(gaps)} calls meanwhile")  # fmt: skip
    assert result[0][0] == 400  # the shape says 1 element, the data holds over a million
    assert max(gaps) < 0.5


def test_web_pages_cannot_reach_the_api_through_a_browser(exposed: RunningServer) -> None:
    port = exposed.http_port
    unload = "/v2/repository/models/negate/unload"
    # a no-cors text/plain POST from another site needs no preflight: refused by its Origin
    code, answer = _post(
        port, unload, b"{}", "Content-Type: text/plain", "Origin: http://evil.example",
        "Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors",
    )  # fmt: skip
    assert code == 403 and ("another origin" in answer or "another site" in answer)
    code, answer = _post(port, unload, b"", "Origin: null")
    assert code == 403 and "opaque origin" in answer
    assert _ready(exposed, "negate")
    # DNS rebinding: the page's own name in Host, aimed at 127.0.0.1
    index = b'{"ready": true}'
    raw = b"POST /v2/repository/index HTTP/1.1\r\nHost: rebind.evil.example:%d\r\n" % port
    code, answer = _request(port, raw + b"Content-Length: %d\r\n\r\n%s" % (len(index), index))
    assert code == 403 and "rebind.evil.example" in answer and "--http-allowed-host" in answer
    # the same requests from the server's own origin, by address or by name, are answered
    code, answer = _post(
        port, "/v2/repository/index", index, f"Origin: http://127.0.0.1:{port}",
        host=f"127.0.0.1:{port}",
    )  # fmt: skip
    assert code == 200 and json.loads(answer.split("\r\n\r\n", 1)[1])
    raw = b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % port
    assert _request(port, raw)[0] == 200
