"""REST (KServe v2 with binary tensors, and with JSON tensors) against gRPC, the same model,
server and concurrency, one image per request, measured side by side in one run.

    python -m loadtests.rest_vs_grpc --model mnist --concurrency 1,16,64 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from .bench import make_images, payloads_for
from .closed_loop import run_load
from .http_closed_loop import http_request, run_http_load
from .local_server import free_port, local_server
from .models import bench_repository, read_config

ROOT = Path(__file__).resolve().parent.parent


def rest_requests(model: str, name: str, datatype: str, images, binary: bool) -> list[bytes]:
    out = []
    for image in images:
        tensor = {"name": name, "datatype": datatype, "shape": [1, *image.shape]}
        headers = {"Content-Type": "application/json"}
        if binary:
            tensor["parameters"] = {"binary_data_size": image.nbytes}
            head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
            body = head.encode() + image.tobytes()
            headers["Inference-Header-Content-Length"] = str(len(head))
        else:
            tensor["data"] = image.reshape(-1).tolist()
            body = json.dumps({"inputs": [tensor]}).encode()
        out.append(http_request("bench", f"/v2/models/{model}/infer", body, headers))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    config = read_config(args.model_repository / args.model)
    name, images, datatype = make_images(config, 256)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = bench_repository(args.model_repository, args.model, folder / "models", 64, 1, 0)[
            "batching"
        ]
        http_port = free_port()
        flags = ("--http-port", str(http_port), "--log-level", "WARNING")
        with local_server(folder / "models", folder / "server.log", *flags) as url:
            transports = {
                "gRPC": lambda c: run_load(url, grpc_payloads, c, args.duration),
                "REST binary": lambda c: run_http_load(
                    f"127.0.0.1:{http_port}", binary, c, args.duration
                ),
                "REST JSON": lambda c: run_http_load(
                    f"127.0.0.1:{http_port}", as_json, c, args.duration
                ),
            }
            grpc_payloads = payloads_for(model, name, datatype, images)
            binary = rest_requests(model, name, datatype, images, binary=True)
            as_json = rest_requests(model, name, datatype, images, binary=False)
            for concurrency in levels:
                for transport, run in transports.items():
                    result = asyncio.run(run(concurrency))
                    rows.append(
                        {
                            "transport": transport,
                            "concurrency": concurrency,
                            "infer_per_s": result.throughput,
                            "p50_ms": result.percentile(50),
                            "p99_ms": result.percentile(99),
                            "errors": result.errors,
                        }
                    )
                    print(
                        f"{transport:<12} c={concurrency:<4} {result.throughput:>8.0f} infer/s  "
                        f"p50 {result.percentile(50):6.2f} ms  p99 {result.percentile(99):6.2f} ms"
                        f"  errors {result.errors} {result.first_error}",
                        flush=True,
                    )
    for concurrency in levels:
        by = {r["transport"]: r["infer_per_s"] for r in rows if r["concurrency"] == concurrency}
        print(
            f"c={concurrency}: REST binary / gRPC = {by['REST binary'] / by['gRPC']:.2f}, "
            f"REST JSON / gRPC = {by['REST JSON'] / by['gRPC']:.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
