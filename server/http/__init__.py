"""The HTTP edge: KServe v2 REST, the Vision API's routes, JSON <-> core converters, the call
wrapper (auth, request id, metrics, errors), OpenAPI, the web page, the embedded server.

Parses, authenticates, calls the core, encodes. May import: core, tasks, observability,
protocol, settings. Never imports the gRPC edge.
"""
