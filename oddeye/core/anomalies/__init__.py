"""Synthetic anomalies for every kind of evidence, made on the user's own normal data (seeded, fast): what each
head's `--auto` validates its candidate settings on. Images (CutPaste, scar, DRAEM texture, brightness, blur,
colour, foreign objects), video (objects too fast, too big, in unused zones, loitering, going the wrong way; frozen
and replayed frames), point clouds (dents, bulges, holes, cracks, blobs) and patrol pairs (objects inserted and
removed, local changes under small warps)."""

from oddeye.core.anomalies.images import IMAGE_ANOMALIES, AnomalousImage, make_image_anomalies, make_image_anomaly
from oddeye.core.anomalies.patrol import PATROL_CHANGES, PatrolChange, make_patrol_change, make_patrol_normal, second_run
from oddeye.core.anomalies.points import KINDS as POINT_ANOMALIES
from oddeye.core.anomalies.points import DefectCloud, make_defect
from oddeye.core.anomalies.video import VIDEO_ANOMALIES, AnomalousClip, make_video_anomaly

__all__ = [
    "IMAGE_ANOMALIES", "PATROL_CHANGES", "POINT_ANOMALIES", "VIDEO_ANOMALIES", "AnomalousClip", "AnomalousImage",
    "DefectCloud", "PatrolChange", "make_defect", "make_image_anomalies", "make_image_anomaly",
    "make_patrol_change", "make_patrol_normal", "make_video_anomaly", "second_run",
]
