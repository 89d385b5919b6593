"""UCSD Ped2: does a bigger or longer-trained video-prediction model score better? (a GPU sweep)

Trains variants of the 64x64 generator for fixed step counts and scores the 12 test videos (stride-2 score,
per-video min-max, as bench_video_prediction.py) after each. Meant for a CUDA machine (all variants run at once,
one process each); on a CPU it works with --steps small. Prints one JSON line per checkpoint and writes
<out>/<variant>.json. Run: python benchmarks/bench_video_capacity.py --root ../shared/data/ucsd_ped2 [--variants base,c2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> PredictorConfig / TrainConfig overrides
    "base": {}, "c2": {"channels": (32, 64, 64)}, "c4": {"channels": (64, 128, 128), "heads": 8},
    "b64": {"batch_size": 64}, "noadv": {"w_adv": 0.0}, "c2p8": {"channels": (32, 64, 64), "past": 8},
}


def run_variant(name: str, root: Path, steps: list[int], out: Path, device: str) -> dict:
    """Train one variant, scoring after each step count in `steps`."""
    from oddeye.core.metrics import frame_auroc
    from oddeye.video.datasets import load_video_dataset
    from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, TrainConfig
    from oddeye.video.prediction.head import PredictionHead, split_validation
    from oddeye.video.prediction.train import Trainer

    over = VARIANTS[name]
    cfg = PredictorConfig(**{k: v for k, v in over.items() if k in PredictorConfig.__dataclass_fields__})
    tc = TrainConfig(minutes=1e9, **{k: v for k, v in over.items() if k in TrainConfig.__dataclass_fields__})
    head = PredictionHead(PredictionConfig(model=cfg, train=tc), device=device)
    ds = load_video_dataset("ucsd-ped2", root)
    train = head.read_frames([v.source for v in ds.train])
    test = [v for _, v in head.read_frames([v.source for v in ds.test])]
    labels = [v.labels for v in ds.test]
    tr, val = split_validation(train, tc.val_fraction, head.config.lead, tc.seed)
    trainer = Trainer(cfg, tc, [v for _, v in tr], device)
    res = {"variant": name, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in over.items()},
           "params_g": sum(p.numel() for p in trainer.g.parameters()), "device": device, "points": []}
    t0, done = time.perf_counter(), 0
    for s in steps:
        trainer.tcfg = tc.replace(max_steps=s - done)
        trainer.run(None, progress=False)
        done = s
        head.g = trainer.g.eval()
        head.calibrate([v for _, v in val])
        sc = [head._series_from_array(v).score for v in test]
        p = {"step": s, "wall_s": round(time.perf_counter() - t0, 1)}
        for part, sl in (("all", slice(None)), ("dev", slice(0, None, 2)), ("held", slice(1, None, 2))):
            p.update({f"{k}_{part}": round(v, 4) for k, v in frame_auroc(labels[sl], sc[sl]).items()})
        res["points"].append(p)
        print(json.dumps({"variant": name, **p}), flush=True)
        (out / f"{name}.json").write_text(json.dumps(res, indent=1))
    return res


def main() -> int:
    """Run the variants (in parallel subprocesses when more than one)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ucsd_ped2")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--steps", default="1000,2000,4000,8000,16000", help="step counts to score at")
    ap.add_argument("--device", default=None, help="cuda (default where present) or cpu")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "video_capacity")
    args = ap.parse_args()
    names = [n for n in args.variants.split(",") if n]
    bad = [n for n in names if n not in VARIANTS]
    if bad or not args.root.is_dir():
        print(f"unknown variants {bad}" if bad else f"UCSD Ped2 not found at {args.root}", file=sys.stderr)
        return 2
    from oddeye.core.config import get_device

    device = get_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = [int(s) for s in args.steps.split(",")]
    if len(names) == 1:
        run_variant(names[0], args.root, steps, args.out, device)
        return 0
    procs = [subprocess.Popen([sys.executable, __file__, "--root", str(args.root), "--variants", n, "--steps",
                               args.steps, "--device", device, "--out", str(args.out)]) for n in names]
    return max(p.wait() for p in procs)


if __name__ == "__main__":
    sys.exit(main())
