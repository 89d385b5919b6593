"""`oddeye demo` part for the rules head: induce rules on generated normal footage, flag fast/big/off-path walkers."""

from __future__ import annotations

from pathlib import Path

from oddeye.core.head import RunContext
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video, write_frames
from oddeye.store.writer import write_result
from oddeye.video.rules.cli import fit_video_rules
from oddeye.video.rules.head import RulesHead

SEED = 7


def run_demo(out: Path, db: str) -> list[str]:
    """Fit on 300 normal frames, score three videos with injected anomalies; write result, timelines, store."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normal = write_frames(make_video(seed=SEED, n_frames=300, anomaly=None).frames, out / "data" / "normal")
    tests = {a: make_video(seed=SEED, anomaly=a) for a in ("fast", "big", "wrong_place")}
    dirs = [write_frames(v.frames, out / "data" / f"test_{a}") for a, v in tests.items()]
    # in this scene nobody ever leaves the walkway, so the zone rule is trusted fully (Ped2's default is 0.1)
    model = fit_video_rules(out=out / "model", frames=[normal], zone_weight=1.0, progress=False)
    head = RulesHead.load(model)
    result = head.score(dirs, ctx=RunContext(progress=False))
    lines = [f"{len(head.rules)} rules induced from 300 normal frames: {model / 'rules.yaml'} "
             f"(print them: oddeye rules show {model})"]
    for (a, v), sc in zip(tests.items(), result.scores):
        sc.label = 1
        a_uc = auroc(v.labels, sc.frame_scores)
        result.metrics[f"frame_auroc_{a}"] = a_uc
        evs = [e for e in result.events if e.sample_id == sc.sample_id]
        why = evs[0].reason if evs else sc.reason
        lines.append(f"{a}: frame AUROC {a_uc:.3f}, {len(evs)} event(s); reason: {why[:140]}")
    written = write_result(result, out / "result", kind="video", db=db, model=model, data=out / "data")
    return lines + written.lines
