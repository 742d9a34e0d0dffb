"""Training and ONNX export scripts for the model families deepserve serves."""
