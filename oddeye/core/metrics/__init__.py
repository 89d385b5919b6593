"""Every metric of oddeye, once: image (`scores`), pixel/point and region (`maps`: AUPRO, AUPIMO), video
(`video`) and change detection (`change`); all importable from here.

Conventions: a higher score means more anomalous; a sample is flagged when `score >= threshold`;
labels and masks are binary (anything > 0 counts as anomalous). Ties are handled as scikit-learn does:
one ROC/PR point per distinct score value.
"""

from oddeye.core.metrics._base import ArrayLike, MetricInputError
from oddeye.core.metrics.change import box_iou, box_recall, boxes_to_mask, change_f1_iou
from oddeye.core.metrics.maps import aupimo, aupro, pixel_auroc
from oddeye.core.metrics.scores import (auroc, average_precision, f1_max, minmax_normalize, roc_curve,
                                        threshold_at_fpr)
from oddeye.core.metrics.video import frame_auroc

__all__ = ["ArrayLike", "MetricInputError", "aupimo", "aupro", "auroc", "average_precision", "box_iou",
           "box_recall", "boxes_to_mask", "change_f1_iou", "f1_max", "frame_auroc", "minmax_normalize",
           "pixel_auroc", "roc_curve", "threshold_at_fpr"]
