"""A small review store filled from oddeye.core.synth data, for trying the dashboard and for its tests.

The scores here are simple, honest stand-ins computed from the generated data (frame differences, distance
to the mean image, distance from the fitted surface, reference/query difference), not a head's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from oddeye.core import synth
from oddeye.core.imageio import write_image
from oddeye.core.types import AnomalyMap, Event, Result, Score, events_from_scores
from oddeye.core.viz import save_overlay
from oddeye.store.api import save_result


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def video_result(out: Path, seed: int = 0) -> Result:
    """A frame-difference score of a generated video with a fast walker; frames and per-frame maps on disk."""
    v = synth.make_video(seed=seed, n_frames=80, size=(96, 128), anomaly="fast", anomaly_span=(40, 60))
    frames_dir = synth.write_frames(v.frames, out / "video_frames")
    f = v.frames.astype(np.float32)
    diff = np.abs(np.diff(f, axis=0, prepend=f[:1]))
    maps_dir = out / "video_maps"
    maps_dir.mkdir(parents=True, exist_ok=True)
    for t in range(0, len(diff), 10):
        np.save(maps_dir / f"{t:06d}.npy", gaussian_filter(diff[t], 2))
    scores = diff.reshape(len(diff), -1).mean(1)
    times = np.arange(len(scores)) / v.fps
    thr = float(np.quantile(scores, 0.8))
    events = events_from_scores(scores, thr, "clip0", times=times, merge_gap=2,
                                reasons=["a walker moves faster than the others"] * len(scores))
    for ev in events:  # where the fast walker is, per frame (as the rules head records it)
        ev.meta["boxes"] = {str(t): _bbox(v.masks[t]) for t in range(ev.start_frame, ev.end_frame + 1) if v.masks[t].any()}
    sc = Score("clip0", float(scores.max()), label=int(v.labels.max()), frame_scores=scores.astype(np.float32),
               frame_times=times, frame_indices=np.arange(len(scores)), reason="frame difference",
               artefacts={"maps_dir": str(maps_dir)}, meta={"path": str(frames_dir)})
    return Result(head="video-rules", scores=[sc], events=events, threshold=thr, metrics={"n_frames": len(scores)})


def image_result(out: Path, seed: int = 0) -> Result:
    """Distance to the mean normal image, per pixel, on a generated image set; images and overlays on disk."""
    imgs = synth.make_image_set(seed=seed, n_normal=6, n_defect=4, size=(64, 64))
    mean = np.mean([im.image for im in imgs if im.label == 0], axis=0)
    scores = []
    for i, im in enumerate(imgs):
        path = write_image(out / "images" / f"img{i:02d}.png", im.image)
        amap = gaussian_filter(np.abs(im.image.astype(np.float32) - mean).mean(-1), 2)
        ov = save_overlay(out / "overlays" / f"img{i:02d}.png", im.image, amap)
        scores.append(Score(f"img{i:02d}", float(amap.max()), label=im.label, maps={"anomaly": AnomalyMap("pixel", amap)},
                            artefacts={"overlay": str(ov)}, meta={"path": str(path)}))
    events = [Event(f"img{i:02d}", scores[i].score, box=tuple(_bbox(im.mask)), reason="the map is hot over a defect")
              for i, im in enumerate(imgs) if im.mask.any()]
    return Result(head="image-patchcore", scores=scores, events=events,
                  threshold=float(np.median([s.score for s in scores])))


def cloud_result(out: Path, seed: int = 0) -> Result:
    """Distance from the sphere surface as the point score of a generated dented sphere; points on disk."""
    c = synth.make_point_cloud(seed=seed, n_points=3000, shape="sphere", defect="dent", defect_size=0.1)
    path = out / "clouds" / "sphere.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, c.points)
    r = np.linalg.norm(c.points - c.points.mean(0), axis=1)
    point = np.abs(r - np.median(r)).astype(np.float32)
    top = np.argsort(point)[::-1][:20]
    ev = Event("sphere", float(point[top[0]]), reason="points lie off the surface",
               meta={"centre": [round(float(v), 3) for v in c.points[top].mean(0)]})
    sc = Score("sphere", float(point.max()), label=int(c.labels.max()), maps={"anomaly": AnomalyMap("point", point)},
               meta={"path": str(path)})
    return Result(head="pointcloud", scores=[sc], events=[ev])


def patrol_result(out: Path, seed: int = 0) -> Result:
    """Reference/query difference along a generated route, laid out as the patrol head records it: the reference
    and query runs as frame folders (the reference a run artefact), change maps in the store, and pictures
    written only for the positions over the threshold."""
    route = synth.make_route(seed=seed, n_frames=12, size=(72, 96), n_objects=2)
    ref_dir = synth.write_frames(route.reference, out / "patrol" / "reference")
    qry_dir = synth.write_frames(route.query, out / "patrol" / "query")
    changes = [gaussian_filter(np.abs(q.astype(np.float32) - r).mean(-1), 1.5)
               for r, q in zip(route.reference, route.query)]
    s = np.array([float(c.max()) for c in changes])
    thr = float(np.quantile(s, 0.7))
    scores = []
    for t, change in enumerate(changes):
        arts = {}
        if s[t] >= thr:
            arts = {"reference": str(write_image(out / "patrol" / f"ref{t:03d}.png", route.reference[t])),
                    "query": str(write_image(out / "patrol" / f"qry{t:03d}.png", route.query[t]))}
        scores.append(Score(f"pos{t:03d}", s[t], label=int(route.labels[t]), maps={"change": AnomalyMap("pixel", change)},
                            artefacts=arts, meta={"kind": "patrol_pair", "index": t, "ref_index": t,
                                                  "source": str(qry_dir)}))
    return Result(head="patrol", scores=scores, events=events_from_scores(s, thr, "route"), threshold=thr,
                  meta={"reference": str(ref_dir), "artefacts": {"reference": str(ref_dir)}})


def fill_sample_store(out: str | Path, db: str | None = None, seed: int = 0) -> dict[str, int]:
    """Write one run of each kind (video, images, 3D, patrol) into `db` (default out/store.db); kind -> run id."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = db or str(out / "store.db")
    made = {"video": video_result(out, seed), "images": image_result(out, seed), "3d": cloud_result(out, seed),
            "patrol": patrol_result(out, seed)}
    return {k: save_result(db, r, kind="demo", model=None, data=f"oddeye.core.synth seed {seed}")
            for k, r in made.items()}
