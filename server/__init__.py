"""The deepserve serving process: transports -> data plane -> scheduler -> runtime."""
