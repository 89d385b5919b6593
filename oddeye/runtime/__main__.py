"""python -m oddeye.runtime EXPORT INPUT... : score with an oddeye export, without PyTorch.

EXPORT is the folder `oddeye export` wrote, or its model file (model.onnx, model.xml). INPUT: image files or folders
(image heads), frame folders or video files (video-prediction), .npy FPFH feature arrays (point-cloud adapter).
Prints one line per input and writes maps (.npy, and a PNG heatmap for images) and scores.json under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from oddeye.core.errors import InputError, OddeyeError
from oddeye.core.imageio import list_images
from oddeye.runtime.manifest import read_export


def _flag(score: float, threshold: float | None) -> str:
    return "ANOMALY" if threshold is not None and score > threshold else ""


def _heatmap(amap: np.ndarray, vmax: float | None) -> np.ndarray:
    """A float map (H, W) as a BGR JET heatmap, 0 to max(map, vmax)."""
    top = max(float(amap.max()), vmax or 0.0, 1e-12)
    return cv2.applyColorMap(np.clip(amap / top * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)


def _name(path: Path, used: set[str]) -> str:
    """A file stem unique among `used` (two folders may both hold 000.png)."""
    name, n = path.stem, 1
    while name in used:
        name, n = f"{path.stem}_{n}", n + 1
    used.add(name)
    return name


def score_images(export: Path, inputs: list[Path], out: Path, threads: int | None) -> list[dict[str, Any]]:
    """Score image files and folders; print a line each, write maps under out/maps."""
    from oddeye.runtime.image import ImageModel

    model = ImageModel(export, threads)
    files = [f for p in inputs for f in (list_images(p) if p.is_dir() else [p])]
    if not files:
        raise InputError(f"no images in {', '.join(map(str, inputs))}", "pass image files or folders of them")
    (out / "maps").mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for path, score, amap in model.score_files(files):
        name = _name(path, used)
        np.save(out / "maps" / f"{name}.npy", amap)
        cv2.imwrite(str(out / "maps" / f"{name}.png"), _heatmap(amap, model.pixel_threshold))
        print(f"{score:10.4f}  {path}  {_flag(score, model.threshold)}".rstrip(), flush=True)
        rows.append({"input": str(path), "score": score, "anomalous": bool(_flag(score, model.threshold)),
                     "map": str(out / "maps" / f"{name}.npy")})
    return rows


def score_videos(export: Path, inputs: list[Path], out: Path, threads: int | None) -> list[dict[str, Any]]:
    """Score frame folders and video files; print a line each, write z-scores and the peak error map."""
    from oddeye.runtime.video import VideoModel

    model = VideoModel(export, threads)
    out.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for src in inputs:
        s = model.score_video(src)
        name = _name(src, used)
        np.save(out / f"{name}_z.npy", s.z)
        np.save(out / f"{name}_peak_error.npy", s.peak_map)
        above = int((s.z > model.threshold).sum())
        print(f"{float(s.z.max()):10.4f}  {src}  {above} of {len(s.z)} frames above {model.threshold:.3g}", flush=True)
        rows.append({"input": str(src), "score": float(s.z.max()), "frames_above": above, "frames": len(s.z),
                     "z": str(out / f"{name}_z.npy")})
    return rows


def adapt_features(export: Path, inputs: list[Path], out: Path, threads: int | None) -> list[dict[str, Any]]:
    """Run the point-cloud adapter on .npy FPFH arrays (M, D_in); write the adapted arrays."""
    from oddeye.runtime.session import Session

    d, doc = read_export(export)
    session = Session(d, doc, threads)
    out.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for src in inputs:
        try:
            feats = np.load(src)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read features {src} ({e})", "pass .npy arrays of FPFH features") from None
        z = session.run(features=feats)["adapted"]
        target = out / f"{_name(src, used)}_adapted.npy"
        np.save(target, z)
        print(f"{src}: {feats.shape} -> {z.shape}  {target}", flush=True)
        rows.append({"input": str(src), "adapted": str(target)})
    return rows


RUNNERS = {"image": score_images, "video": score_videos, "pointcloud": adapt_features}


def main(argv: list[str] | None = None) -> int:
    """Entry point; a user's mistake prints `error: ...` (and a hint) and exits 2."""
    ap = argparse.ArgumentParser(prog="python -m oddeye.runtime", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path, help="export folder or its model file")
    ap.add_argument("inputs", type=Path, nargs="+", help="what to score")
    ap.add_argument("--out", type=Path, default=Path("oddeye-runtime"), help="folder for maps and scores.json")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: ODDEYE_THREADS or all)")
    args = ap.parse_args(argv)
    try:
        _, doc = read_export(args.export)
        missing = [p for p in args.inputs if not p.exists()]
        if missing:
            raise InputError(f"input not found: {missing[0]}", "check the path")
        rows = RUNNERS[doc["kind"]](args.export, args.inputs, args.out, args.threads)
    except OddeyeError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"export": str(args.export), "head": doc["head"], "threshold": doc.get("threshold"), "results": rows}
    (args.out / "scores.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'scores.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
