"""What both transports share: the data plane (tensor inference), Vision (image tasks), the
control handler (readiness, index, metadata, config, statistics, load, unload) answering with
neutral views, authentication, and image decoding with its limits.

May import: tasks, models, batching, observability, protocol, settings. No gRPC and no HTTP
below this line: the transports call in, never the other way.
"""
