"""Seeded, small, fast scene generators for tests and `oddeye demo` (never for quoted accuracy).

(a) make_video: walkers on a walkway with an injected anomaly; (b) make_image_set, make_pair,
make_route: textured surfaces with defects, reference/query pairs and patrol routes with changes;
(c) make_point_cloud: sampled surfaces with dents and bulges. Same seed, same output.
"""

from oddeye.core.synth.images import DEFECTS, SynthImage, SynthPair, SynthRoute, make_image_set, make_pair, make_route
from oddeye.core.synth.points import SHAPES, SynthCloud, make_point_cloud
from oddeye.core.synth.video import VIDEO_ANOMALIES, SynthVideo, make_video, write_frames, write_video_file

__all__ = [
    "DEFECTS", "SHAPES", "VIDEO_ANOMALIES", "SynthCloud", "SynthImage", "SynthPair", "SynthRoute", "SynthVideo",
    "make_image_set", "make_pair", "make_point_cloud", "make_route", "make_video", "write_frames", "write_video_file",
]
