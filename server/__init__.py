"""The deepserve serving process, a folder per concern (docs/architecture.md):
edges (grpc/, http/) -> core/ -> models/ -> batching/ -> runtime/, with tasks/, observability/
and protocol/ beside them and split/ choosing where the models run. Rooms import downward
only; each room's __init__ says what it may import."""
