"""Frame-prediction head (CT-D2GAN style): predict each frame from the past ones; anomaly = PSNR drop."""

from oddeye.video.prediction.head import NAME, PredictionHead

__all__ = ["NAME", "PredictionHead"]
