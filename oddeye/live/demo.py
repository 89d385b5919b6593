"""`oddeye demo` part for live sources: a looped generated clip watched for a few seconds, events in the store."""

from __future__ import annotations

from pathlib import Path

from oddeye.core.synth import make_video, write_frames, write_video_file
from oddeye.live.config import one_source
from oddeye.live.watcher import Watcher

SEED = 7


def run_demo(out: Path, db: str, seconds: float = 8.0) -> list[str]:
    """Fit a rules model on normal footage, watch a looped clip with a fast walker for `seconds`; summary lines."""
    from oddeye.video.rules.cli import fit_video_rules

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normal = write_frames(make_video(seed=SEED, n_frames=200, anomaly=None).frames, out / "data" / "normal")
    model = fit_video_rules(out=out / "model", frames=[normal], zone_weight=1.0, progress=False)
    clip = write_video_file(make_video(seed=SEED, n_frames=150, anomaly="fast", anomaly_span=(40, 110)).frames,
                            out / "data" / "camera.mp4", fps=25)
    cfg = one_source(str(model), str(clip), name="demo-camera", loop=True, db=db, out=str(out / "live"),
                     chunk_s=1.0)
    summary = Watcher(cfg, seconds=seconds).run()
    return [f"watched {clip.name} (looped, as a live camera) for {summary['wall_s']:.0f} s: {summary['frames']} "
            f"frames scored, {summary['events']} event(s), lag p95 {summary['lag_p95_s']} s",
            f"health: oddeye watch status --db {db}",
            f"the Live page: oddeye ui --db {db}",
            f"watch it yourself: oddeye watch --model {model} --source {clip} --loop --db {db}"]
