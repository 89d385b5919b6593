"""Industrial image anomaly detection: PatchCore, Gaussian (PaDiM-like) and zero-shot mutual-scoring heads."""
