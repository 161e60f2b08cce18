"""Deployment: ONNX export checked against torch, INT8 quantisation with ONNX Runtime, and latency benchmarks.

``onnx_export.py`` writes an ONNX graph with seldepth's metadata and checks it against torch;
``quantize.py`` makes a static INT8 graph from it; ``openvino_export.py`` converts it to an OpenVINO IR (FP32,
BF16 or NNCF INT8); ``bench.py`` times the backends side by side. ONNX files are read back by
:mod:`seldepth.models.onnx_model` and IRs by :mod:`seldepth.models.openvino_model` (model file formats like safetensors).
"""
