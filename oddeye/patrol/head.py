"""PatrolHead: fit on a reference run, score query runs frame by frame (pair, align, compare) -> Result with events."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Self

import cv2
import numpy as np
from tqdm import tqdm

from oddeye.core.errors import InputError, ModelError, OddeyeError, first_line
from oddeye.core.head import RunContext, context, read_manifest, write_manifest
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.patrol.align import Alignment, align
from oddeye.patrol.change import Change, change_map
from oddeye.patrol.config import LEGACY_CONFIG_FILE, PatrolConfig
from oddeye.patrol.pairing import pair_frames
from oddeye.patrol.reference import ReferenceRun, frame_size, lookup_poses, read_poses

NAME = "patrol"


@dataclass
class FrameRecord:
    """What happened to one query frame: its pairing, alignment, score and boxes, or why it was skipped."""

    index: int
    time: float
    status: str  # "ok", "no_reference", "align_failed", "error"
    score: float = float("nan")
    ref_index: int | None = None
    similarity: float | None = None
    margin: float | None = None
    alignment: dict[str, Any] = field(default_factory=dict)
    boxes: list[list[float]] = field(default_factory=list)
    reason: str = ""
    artefacts: dict[str, str] = field(default_factory=dict)  # reference / query / change pictures


@dataclass
class _Run:
    """One query run while it is scored: its frame records, the maps kept so far and the pairing state."""

    name: str
    overlays: Path | None  # folder for reference / query / change pictures of flagged frames (None: none)
    max_maps: int | None  # change maps kept (the highest-scoring frames); None: all
    records: list[FrameRecord] = field(default_factory=list)
    maps: dict[str, AnomalyMap] = field(default_factory=dict)
    map_scores: dict[str, float] = field(default_factory=dict)
    cache: dict[int, np.ndarray] = field(default_factory=dict)  # a few reference frames (consecutive queries share)
    previous: int | None = None  # reference frame paired with the last frame of the previous batch
    last_good: int | None = None  # reference frame of the last well-aligned query frame


class PatrolHead:
    """Reference-vs-query change detection for patrol footage (UMAD-style pairing + MetaUAS-style soft alignment)."""

    name = NAME

    def __init__(self, config: PatrolConfig | None = None, **overrides: Any) -> None:
        self.config = PatrolConfig.build(config, **overrides)
        self.reference: ReferenceRun | None = None
        self._extractors: dict[tuple, Any] = {}

    def _build(self, size: int, layers: tuple[int, ...] | None = None) -> Any:
        key = (self.config.backbone, size, layers)
        if key not in self._extractors:
            from oddeye.retrieval.features import build_extractor

            self._extractors[key] = build_extractor(self.config.backbone, image_size=size, threads=self.config.threads,
                                                    layers=list(layers) if layers else None)
        return self._extractors[key]

    @property
    def extractor(self) -> Any:
        """The shared backbone for patch features (built on first use)."""
        return self._build(self.config.image_size, self.config.layers)

    @property
    def describer(self) -> Any:
        """The shared backbone at the (smaller) input size used for global descriptors."""
        return self._build(self.config.descriptor_size)

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Ingest the reference route: a video file or frame folder (or a one-item list of one), or a ReferenceRun.

        ctx.poses: the reference's poses CSV (frame,time,x,y[,z][,yaw]); ctx.progress: show a progress bar.
        """
        ctx = context(ctx)
        source = _one_reference(samples)
        if isinstance(source, ReferenceRun):
            self.reference = source
        else:
            self.reference = ReferenceRun.ingest(source, self.describer, poses=ctx.poses, stride=self.config.stride,
                                                 max_side=self.config.max_side, progress=ctx.progress)
        return self

    def _need_reference(self) -> ReferenceRun:
        if self.reference is None:
            raise ModelError("this patrol head has no reference run",
                             "fit it with `oddeye fit patrol` (or head.fit(reference)), or load a model folder")
        return self.reference

    def compare(self, query: np.ndarray, reference: np.ndarray,
                ref_valid: np.ndarray | None = None) -> tuple[Alignment, Change | None]:
        """Align `reference` onto `query` (H, W[, 3]) uint8 and compute the change map (None if alignment failed)."""
        al = align(reference, query, detector=self.config.detector, ref_valid=ref_valid,
                   ecc_levels=self.config.ecc_levels)
        if not al.ok:
            return al, None
        fq = fr = None
        if self.config.use_features and self.config.change.feature_weight > 0:
            rgb = [np.ascontiguousarray(a if a.ndim == 3 else np.repeat(a[..., None], 3, 2)) for a in (query, al.warped)]
            f = self.extractor.extract(np.stack(rgb))
            fq, fr = f[0], f[1]
        return al, change_map(query, al.warped, al.valid, fq, fr, self.config.change)

    def _check_query(self, source: Any) -> int | None:
        """Probe a query run: another aspect ratio than the reference -> InputError; another scale -> a warning.

        Returns its frame count (None for a live stream).
        """
        from oddeye.core.videoio import VideoReader, open_video

        ref = self._need_reference()
        probe = source if isinstance(source, VideoReader) else open_video(source)
        w, h, n = probe.width, probe.height, probe.n_frames
        if probe is not source:
            probe.close()
        rw, rh = ref.size
        if abs((w / h) / (rw / rh) - 1) > 0.02:
            raise InputError(f"query {probe.source} is {w}x{h} but the reference frames are {rw}x{rh}: "
                             "different aspect ratios", "record both runs with the same camera settings")
        if (w, h) != (rw, rh) and frame_size(w, h, self.config.max_side) != (rw, rh):
            warnings.warn(f"query {probe.source} ({w}x{h}) resized to the reference's {rw}x{rh}", stacklevel=3)
        return n

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score query runs (a video file, frame folder or VideoReader, or a list of them): one Score per run with
        per-frame scores (S,), change maps and a record per frame; events per flagged span.

        ctx.poses: the query's poses CSV (one run), or a list with one (or None) per run. ctx.out: reference /
        query / change pictures of flagged frames under out/overlays. ctx.keep_maps: None keeps `max_maps` change
        maps per run (the highest-scoring frames), True all, False none. ctx.skip_bad: a run that cannot be
        opened or read is recorded with Result.add_error and the others are scored; without it, every run is
        checked before any is scored and the first bad one raises.
        """
        ctx = context(ctx)
        ref = self._need_reference()
        queries = [samples] if isinstance(samples, (str, Path)) or hasattr(samples, "get_batch") else list(samples)
        poses = _per_run(ctx.poses, len(queries))
        if self.config.pairing.pose_radius is not None and (ref.poses is None or any(p is None for p in poses)):
            raise InputError("a pose radius needs poses for both the reference and the query",
                             "fit with `oddeye fit patrol --poses` and score with `oddeye score patrol --poses`, "
                             "or drop --pose-radius")
        result = Result(head=NAME, threshold=self.config.event_threshold, meta=self._result_meta())
        tables: list[dict | None | OddeyeError] = []  # per run: its poses table, or why it cannot be scored
        for q, p in zip(queries, poses):  # check every run before scoring any: a bad one loses no work
            try:
                n = self._check_query(q)
                tables.append(read_poses(p, n) if p is not None else None)
            except OddeyeError as e:
                if not ctx.skip_bad:
                    raise
                tables.append(e)
        max_maps = None if ctx.keep_maps else 0 if ctx.keep_maps is False else self.config.max_maps
        for q, table in zip(queries, tables):
            if not isinstance(table, OddeyeError):
                try:
                    score, events = self._score_run(q, table, ctx, max_maps)
                    result.scores.append(score)
                    result.events.extend(events)
                    continue
                except OddeyeError as e:
                    if not ctx.skip_bad:
                        raise
                    table = e
            path = Path(str(q)).expanduser()
            result.add_error(_run_name(q), table.message, path if path.exists() else None)
        return result

    def _result_meta(self) -> dict[str, Any]:
        """Run-level meta: where the reference frames are read from (a loaded model's frames folder, else the
        route ingested), absolute and a run artefact (the dashboard reads reference frames from it), the route."""
        ref = self._need_reference()
        p = Path(ref.source).expanduser()
        meta: dict[str, Any] = {"reference": str(p.resolve()) if p.exists() else ref.source,
                                "reference_route": ref.meta.get("original_source") or ref.source,
                                "reference_frames": len(ref), "config": self.config.to_dict()}
        if p.exists():
            meta["artefacts"] = {"reference": meta["reference"]}
        return meta

    def _score_run(self, source: Any, table: dict | None, ctx: RunContext, max_maps: int | None) -> tuple[Score, list]:
        from oddeye.core.videoio import VideoReader, open_video

        ref = self._need_reference()
        reader = source if isinstance(source, VideoReader) else open_video(source, size=ref.size)
        run = _Run(_run_name(reader.source), ctx.out / "overlays" if ctx.out is not None else None, max_maps)
        n = reader.n_frames
        bar = tqdm(total=n, desc=f"patrol {run.name}", unit="frame", leave=False, disable=not ctx.progress)
        try:
            for fr in reader.iter_batches(16):
                self._score_batch(fr, table, run)
                bar.update(len(fr))
        except Exception as e:  # noqa: BLE001 - a truncated/corrupt video: keep what was scored
            run.records.append(FrameRecord(-1, float("nan"), "error", reason=f"reading stopped: {_brief(e)}"))
        finally:
            bar.close()
            if reader is not source:
                reader.close()
        records = run.records
        done = [r for r in records if r.index >= 0]
        s = np.array([r.score for r in done], np.float64)
        t = np.array([r.time for r in done], np.float64)
        idx = np.array([r.index for r in done], np.int64)
        reasons = [r.reason for r in done]
        s_ev = np.where(np.isfinite(s), s, -np.inf)  # frames without a score never peak an event
        events = events_from_scores(s_ev, self.config.event_threshold, run.name, times=t, frame_indices=idx,
                                    merge_gap=self.config.merge_gap, reasons=reasons) if len(s) else []
        by_index = {r.index: r for r in done}
        for ev in events:
            peak = by_index.get(ev.meta.get("peak_frame"))
            if peak is not None and peak.boxes:
                ev.box = tuple(peak.boxes[0])
                ev.meta["boxes"] = peak.boxes
                ev.meta["ref_frame"] = peak.ref_index
        counts = {st: sum(r.status == st for r in records) for st in ("ok", "no_reference", "align_failed", "error")}
        finite = s[np.isfinite(s)] if len(s) else s
        total = float(finite.max()) if finite.size else float("nan")
        summary = (f"{len(events)} event(s) in {len(done)} frames; {counts['no_reference']} without reference, "
                   f"{counts['align_failed']} not aligned, {counts['error']} failed")
        maps = {k: run.maps[k] for k in sorted(run.maps)}
        score = Score(sample_id=run.name, score=total, maps=maps, frame_scores=s, frame_times=t, frame_indices=idx,
                      reason=summary, meta={"frames": [asdict(r) for r in records], "counts": counts,
                                            "source": _source_path(reader.source)})
        return score, events

    def _score_batch(self, fr: Any, table: dict | None, run: _Run) -> None:
        ref = self._need_reference()
        times, qposes = lookup_poses(table, fr.indices, fr.times)
        try:
            descs = self.describer.global_descriptor(fr.data)
            pairs = pair_frames(ref, descs, self.config.pairing, fr.indices, times, qposes, previous=run.previous)
            run.previous = next((pr.ref_index for pr in reversed(pairs) if pr.ref_index is not None), run.previous)
        except Exception as e:  # noqa: BLE001 - one bad batch must not end the run
            for i, t in zip(fr.indices, times):
                run.records.append(FrameRecord(int(i), float(t), "error", reason=f"pairing failed: {_brief(e)}"))
            return
        for img, i, t, pr in zip(fr.data, fr.indices, times, pairs):
            rec = FrameRecord(int(i), float(t), "ok" if pr.status == "ok" else "no_reference",
                              ref_index=pr.ref_index, similarity=_r(pr.similarity), margin=_r(pr.margin))
            run.records.append(rec)
            if pr.ref_index is None:
                rec.reason = pr.reason
                continue
            try:
                al, ch = self.compare(img, self._ref_frame(run.cache, pr.ref_index))
                route_ref = None if run.last_good is None else min(run.last_good + 1, len(ref) - 1)
                if not verified(al) and route_ref is not None and route_ref != pr.ref_index:
                    # the descriptors may have been fooled (e.g. by a large new object): try the route position
                    al2, ch2 = self.compare(img, self._ref_frame(run.cache, route_ref))
                    if verified(al2):
                        al, ch, rec.ref_index = al2, ch2, route_ref
                        pr.status = "ok"
                        rec.reason = f"paired by route order with reference frame {route_ref}"
                if verified(al):
                    run.last_good = rec.ref_index
                rec.alignment = al.quality()
                if pr.status == "low_similarity" and not verified(al):
                    rec.ref_index, rec.reason = None, pr.reason
                    continue
                rec.status = "ok"
                if ch is None:
                    rec.status, rec.reason = "align_failed", al.message
                    continue
                rec.score = ch.score
                rec.boxes = [[round(float(v), 1) for v in b] for b in ch.boxes[:10]]
                self._keep_map(run, rec, ch)
                if ch.score > self.config.event_threshold:
                    rec.reason = (f"{len(ch.boxes)} changed region(s) vs reference frame {rec.ref_index} "
                                  f"(similarity {pr.similarity:.2f}, {al.method})")
                    self._write_pictures(run, rec, ch, img, al.warped)
            except Exception as e:  # noqa: BLE001 - record the failure, keep going
                rec.status, rec.reason = "error", f"frame {int(i)} failed: {_brief(e)}"

    def _ref_frame(self, cache: dict[int, np.ndarray], i: int) -> np.ndarray:
        """Reference frame `i` (H, W, 3), from a small cache (consecutive query frames share references)."""
        if i not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[i] = self._need_reference().frames([i])[0]
        return cache[i]

    def _keep_map(self, run: _Run, rec: FrameRecord, ch: Change) -> None:
        """Keep the frame's change map (at most map_side px) if it is among the run's max_maps highest-scoring."""
        key = f"frame_{rec.index:06d}"
        if run.max_maps is not None and len(run.maps) >= run.max_maps:
            if not run.maps:
                return
            low = min(run.map_scores, key=run.map_scores.get)
            if run.map_scores[low] >= ch.score:
                return
            del run.maps[low], run.map_scores[low]
        h, w = ch.map.shape
        s = min(1.0, self.config.map_side / max(h, w))
        small = cv2.resize(ch.map, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        run.maps[key] = AnomalyMap("pixel", small)
        run.map_scores[key] = ch.score

    def _write_pictures(self, run: _Run, rec: FrameRecord, ch: Change, img: np.ndarray, ref_img: np.ndarray) -> None:
        """Reference, query and change-overlay PNGs of a flagged frame under run.overlays (if set)."""
        if run.overlays is None:
            return
        from oddeye.core.imageio import write_image
        from oddeye.patrol.viz import save_change_overlay

        base = run.overlays / f"{run.name}_{rec.index:06d}"
        rec.artefacts = {"change": str(save_change_overlay(f"{base}_change.png", img, ch)),
                         "query": str(write_image(f"{base}_query.png", img)),
                         "reference": str(write_image(f"{base}_reference.png", ref_img))}

    def save(self, directory: str | Path) -> Path:
        """Write the reference run and the manifest (head 'patrol', its config) to `directory`; return it."""
        ref = self._need_reference()
        d = Path(directory)
        ref.save(d)
        (d / LEGACY_CONFIG_FILE).unlink(missing_ok=True)
        write_manifest(d, NAME, config=self.config.to_dict(), reference_frames=len(ref), frame_size=list(ref.size))
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a model folder written by save() (or by an oddeye before the config moved into the manifest).

        The patrol head runs on the CPU; `device` is accepted for the Head contract.
        """
        d = Path(directory)
        doc = read_manifest(d, head=NAME, max_version=1)
        head = cls(PatrolConfig.from_model(d, doc))
        head.reference = ReferenceRun.load(d)
        return head


def verified(al: Alignment, min_inliers: int = 15, min_ecc: float = 0.85) -> bool:
    """True if an alignment is good enough to trust a pairing the descriptors were unsure of."""
    if not al.ok or al.method == "flow":
        return False
    if al.method == "identity":  # nothing to warp: the frames must already agree closely
        return al.residual <= 0.05
    return al.n_inliers >= min_inliers or (al.ecc_corr or 0.0) >= min_ecc


def _one_reference(samples: Any) -> Any:
    """The single reference run in `samples` (a path, a ReferenceRun, or a one-item list of either)."""
    if isinstance(samples, (str, Path, ReferenceRun)):
        return samples
    items = list(samples)
    if len(items) != 1:
        raise InputError(f"a patrol head is fitted on one reference run, got {len(items)}",
                         "pass one video file or frame folder (`oddeye fit patrol --reference ROUTE`)")
    return items[0]


def _per_run(poses: Any, n: int) -> list[Any]:
    """ctx.poses as one entry per query run: None, one CSV for a single run, or a list of n (CSV or None)."""
    if poses is None:
        return [None] * n
    if isinstance(poses, (str, Path)):
        if n != 1:
            raise InputError(f"one poses file for {n} query runs", "score the runs one at a time, or give one "
                                                                     "poses file per run")
        return [poses]
    poses = list(poses)
    if len(poses) != n:
        raise InputError(f"{len(poses)} poses files for {n} query runs", "give one poses file (or None) per run")
    return poses


def _run_name(source: Any) -> str:
    """The sample id of a query run: its file or folder name without suffix."""
    return Path(str(getattr(source, "source", source))).stem or str(source)


def _source_path(source: Any) -> str:
    """An existing local source as an absolute path; anything else (a stream URL, a webcam) as given."""
    p = Path(str(source)).expanduser()
    return str(p.resolve()) if p.exists() else str(source)


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _brief(e: BaseException) -> str:
    msg = e.message if isinstance(e, OddeyeError) else first_line(e) if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"
