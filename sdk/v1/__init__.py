"""Generated code of proto/deepserve/v1 (tools/generate_protos.py)."""
