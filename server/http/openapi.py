"""The OpenAPI description of the HTTP port, served at /openapi.json and kept in
docs/openapi.json (`python -m deepserve.server.http.openapi > docs/openapi.json`)."""

from __future__ import annotations

import json
from typing import Any

from ..._version import __version__
from ..tasks import TASKS

MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
ERROR = {
    "description": "The error, naming what was wrong, and the request id",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
ERRORS = {str(code): ERROR for code in (400, 401, 403, 404, 429, 503)}
IMAGE_BODY = {
    "required": True,
    "description": "One image as the body (PNG, JPEG, BMP, GIF, TIFF, WebP), or one or more "
    "'image' fields of a multipart form",
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        },
    },
}


def _json(description: str, schema: dict | None = None) -> dict:
    body: dict[str, Any] = {"description": description}
    body["content"] = {"application/json": {"schema": schema or {"type": "object"}}}
    return body


def _operation(summary: str, tag: str, ok: dict, **extra: Any) -> dict:
    return {"summary": summary, "tags": [tag], "responses": {"200": ok, **ERRORS}, **extra}


def _per_model(paths: dict, suffix: str, methods: dict) -> None:
    for base, parameters in (
        ("/v2/models/{model}", [MODEL]),
        ("/v2/models/{model}/versions/{version}", [MODEL, VERSION]),
    ):
        paths[f"{base}{suffix}"] = {m: op | {"parameters": parameters} for m, op in methods.items()}


def _vision(paths: dict) -> None:
    names = {int: "integer", float: "number", str: "string"}
    for task in TASKS.values():
        query = [
            {
                "name": p.name,
                "in": "query",
                "required": False,
                "schema": {"type": names[p.kind]},
                "description": p.description,
            }
            for p in task.query
        ]
        for base, parameters in (
            ("/v1/models/{model}", [MODEL]),
            ("/v1/models/{model}/versions/{version}", [MODEL, VERSION]),
        ):
            paths[f"{base}/{task.verb}"] = {
                "post": _operation(
                    f"{task.verb.capitalize()} images",
                    "Vision",
                    _json("One result per image, with server_ms and batch sizes"),
                    parameters=parameters + query,
                    requestBody=IMAGE_BODY,
                )
            }


def _shared_memory(paths: dict) -> None:
    region = {"name": "region", "in": "path", "required": True, "schema": {"type": "string"}}
    base = "/v2/systemsharedmemory"
    statuses = _json(
        "Registered regions: name, key, offset, byte_size",
        {"type": "array", "items": {"type": "object"}},
    )
    for prefix, parameters, which in (
        (base, [], "every region"),
        (f"{base}/region/{{region}}", [region], "one region"),
    ):
        paths[f"{prefix}/status"] = {
            "get": _operation(
                f"Shared memory status of {which} (admin)",
                "KServe v2",
                statuses,
                parameters=parameters,
            )
        }
        paths[f"{prefix}/unregister"] = {
            "post": _operation(
                f"Unregister {which} (admin)",
                "KServe v2",
                _json("Unregistered"),
                parameters=parameters,
            )
        }
    register = _operation(
        'Register a region of a POSIX shared memory object (admin); body {"key": "/name", '
        '"offset": 0, "byte_size": N}',
        "KServe v2",
        _json("Registered"),
        parameters=[region],
        requestBody={"required": True, "content": {"application/json": {}}},
    )
    register["responses"]["409"] = ERROR  # a region of that name is registered already
    paths[f"{base}/region/{{region}}/register"] = {"post": register}


def spec() -> dict:
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _operation("Liveness (open)", "Health", _json("Live"))},
        "/v2/health/ready": {
            "get": _operation("Readiness (open; 503 when not ready)", "Health", _json("Ready"))
        },
        "/v2": {
            "get": _operation("Server metadata", "KServe v2", _json("Name, version, extensions"))
        },
        "/v2/models/stats": {
            "get": _operation("Statistics of every model (admin)", "KServe v2", _json("Statistics"))
        },
        "/v2/repository/index": {
            "post": _operation(
                "The repository's models and their states",
                "KServe v2",
                _json("Models", {"type": "array", "items": {"type": "object"}}),
            )
        },
        "/v2/repository/models/{model}/load": {
            "post": _operation(
                "Load or reload a model (admin, --model-control-mode explicit); body "
                '{"parameters": {"config": "<ModelConfig JSON>"}} optional',
                "KServe v2",
                _json("Loaded"),
                parameters=[MODEL],
            )
        },
        "/v2/repository/models/{model}/unload": {
            "post": _operation(
                "Unload a model (admin, explicit mode)",
                "KServe v2",
                _json("Unloaded"),
                parameters=[MODEL],
            )
        },
        "/v1/models": {
            "get": _operation(
                "Models, their tasks, image sizes and labels", "Vision", _json("Models")
            )
        },
    }
    _per_model(paths, "", {"get": _operation("Model metadata", "KServe v2", _json("Metadata"))})
    _per_model(
        paths, "/ready", {"get": _operation("Model readiness (open)", "Health", _json("Ready"))}
    )
    _per_model(
        paths, "/config", {"get": _operation("Model configuration", "KServe v2", _json("Config"))}
    )
    _per_model(
        paths,
        "/infer",
        {
            "post": _operation(
                "Inference: JSON tensors, or Triton's binary-data extension (a JSON header of "
                "Inference-Header-Content-Length bytes, then the tensors)",
                "KServe v2",
                _json("Outputs (binary ones after the JSON header)"),
                requestBody={"required": True, "content": {"application/json": {}}},
            )
        },
    )
    generate_body = {
        "required": True,
        "description": "One JSON object: each input by name (a text generator's 'text_input', "
        "'stream', 'max_tokens'), optional 'id' and 'parameters'",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    _per_model(
        paths,
        "/generate",
        {
            "post": _operation(
                "Triton's generate extension: one answer, each output by name",
                "KServe v2",
                _json("The model's name and version and each output by name"),
                requestBody=generate_body,
            )
        },
    )
    _per_model(
        paths,
        "/generate_stream",
        {
            "post": _operation(
                "Triton's generate extension, streamed: server-sent events, one a response (a "
                "text generator's tokens as they are decoded); streams unless 'stream' is false",
                "KServe v2",
                {
                    "description": "Events 'data: {...}', each as generate's answer; an error "
                    'after the first comes as an event {"error": ...}',
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                requestBody=generate_body,
            )
        },
    )
    _per_model(
        paths,
        "/stats",
        {"get": _operation("Model statistics (admin)", "KServe v2", _json("Stats"))},
    )
    _shared_memory(paths)
    _vision(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deepserve HTTP API",
            "version": __version__,
            "description": "KServe v2 REST (the Open Inference Protocol, as NVIDIA Triton "
            "serves it) and the Vision API. With tokens configured, send 'Authorization: Bearer "
            "<token>' (health and readiness stay open); statistics and repository control need "
            "the admin scope.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


if __name__ == "__main__":
    print(json.dumps(spec(), indent=2))
