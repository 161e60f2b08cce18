"""Deployment: ONNX export checked against torch, INT8 quantisation with ONNX Runtime, and latency benchmarks.

``onnx_export.py`` writes an ONNX graph with seldepth's metadata and checks it against torch;
``quantize.py`` makes a static INT8 graph from it; ``bench.py`` times the backends side by side.
ONNX files are read back by :mod:`seldepth.models.onnx_model` (a model file format like safetensors).
"""
