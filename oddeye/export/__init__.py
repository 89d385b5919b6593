"""Export fitted oddeye models to ONNX or OpenVINO (`oddeye export`), and compare them with the originals
(`oddeye bench export`). The exported artefacts run without PyTorch in `oddeye.runtime`."""
