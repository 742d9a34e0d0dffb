"""The gRPC edge: the Open Inference Protocol servicer, the Vision servicer, protobuf <-> core
converters, the call wrapper (auth, request id, metrics, errors) and TLS.

Parses, authenticates, calls the core, encodes. May import: core, tasks, observability,
protocol, settings. Never imports the HTTP edge.
"""
