"""ONNX Runtime: sessions, execution providers and their GPU options.

May import: protocol, settings.
"""
