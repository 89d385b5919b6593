"""Torch-free runtime of oddeye exports: ONNX Runtime (or OpenVINO), numpy and OpenCV only.

    python -m oddeye.runtime EXPORT_DIR|MODEL.onnx INPUT...   # prints scores, writes maps
"""
