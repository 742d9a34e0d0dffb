"""The Open Inference Protocol without a wire: the plain request and response types, tensor
datatypes and their numpy codecs, the classification extension, and the error kinds with the
one table of their gRPC and HTTP statuses.

The floor every other room stands on: it imports nothing of the server but `settings`.
"""
