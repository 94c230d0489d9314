"""Serving: ONNX export of one-step cells, runtimes, parity and latency."""
