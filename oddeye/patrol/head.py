"""PatrolHead: fit on a reference run, score query runs frame by frame (pair, align, compare) -> Result with events."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from oddeye.core.errors import InputError, ModelError, OddeyeError
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.patrol.align import Alignment, align
from oddeye.patrol.change import Change, ChangeParams, change_map
from oddeye.patrol.pairing import PairingParams, pair_frames
from oddeye.patrol.reference import ReferenceRun, frame_size, lookup_poses, read_poses

NAME = "patrol"
CONFIG_FILE = "patrol.json"


@dataclass
class PatrolConfig:
    """Everything a PatrolHead needs besides the reference; stored in the model folder."""

    backbone: str = "efficientnet-lite0"
    image_size: int = 160  # backbone input for the change map's patch features (a coarse gate; 256: no better on
    # DeepPCB trainval, 1.7x slower)
    descriptor_size: int = 128  # backbone input for the global descriptors used in pairing
    layers: tuple[int, ...] | None = None  # backbone blocks of the patch features (None: the backbone's default)
    use_features: bool = True
    threads: int | None = None
    max_side: int = 640  # frames are scaled so their longest side is at most this
    stride: int = 1  # use every n-th reference frame
    detector: str = "orb"
    ecc_levels: tuple[int, ...] = (128, 256)  # coarse-to-fine ECC sizes (longest side, px)
    event_threshold: float = 0.1  # frame score (max of the change map) above which a frame is flagged
    merge_gap: int = 2  # flagged spans this many frames apart (e.g. around a "no reference" frame) are one event
    max_maps: int = 64  # change maps kept in the Result (flagged frames first)
    map_side: int = 320  # longest side of the kept maps
    change: ChangeParams = field(default_factory=ChangeParams)
    pairing: PairingParams = field(default_factory=PairingParams)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatrolConfig:
        """Rebuild from asdict() output (unknown keys are ignored)."""
        d = dict(d)
        ch = ChangeParams(**{k: v for k, v in d.pop("change", {}).items() if k in ChangeParams.__dataclass_fields__})
        pp = PairingParams(**{k: v for k, v in d.pop("pairing", {}).items() if k in PairingParams.__dataclass_fields__})
        return cls(change=ch, pairing=pp, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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


class PatrolHead:
    """Reference-vs-query change detection for patrol footage (UMAD-style pairing + MetaUAS-style soft alignment)."""

    name = NAME

    def __init__(self, config: PatrolConfig | None = None, **overrides: Any) -> None:
        self.config = config or PatrolConfig()
        for k, v in overrides.items():
            if not hasattr(self.config, k):
                raise InputError(f"unknown patrol option {k!r}")
            setattr(self.config, k, v)
        self.reference: ReferenceRun | None = None
        self._extractors: dict[tuple, Any] = {}

    def _build(self, size: int, layers: tuple[int, ...] | None = None) -> Any:
        key = (size, layers)
        if key not in self._extractors:
            from oddeye.retrieval.features import build_extractor

            self._extractors[key] = build_extractor(self.config.backbone, image_size=size, threads=self.config.threads,
                                                    layers=list(layers) if layers else None)
        return self._extractors[key]

    @property
    def extractor(self) -> Any:
        """The shared backbone for patch features (built on first use)."""
        layers = tuple(self.config.layers) if self.config.layers else None
        return self._build(self.config.image_size, layers)

    @property
    def describer(self) -> Any:
        """The shared backbone at the (smaller) input size used for global descriptors."""
        return self._build(self.config.descriptor_size)

    def fit(self, reference: str | Path | ReferenceRun, poses: str | Path | None = None) -> PatrolHead:
        """Ingest the reference route (video file, frame folder or a ReferenceRun) and its optional poses CSV."""
        if isinstance(reference, ReferenceRun):
            self.reference = reference
        else:
            self.reference = ReferenceRun.ingest(reference, self.describer, poses=poses, stride=self.config.stride,
                                                 max_side=self.config.max_side)
        return self

    def _need_reference(self) -> ReferenceRun:
        if self.reference is None:
            raise ModelError("this patrol head has no reference run", "call fit(reference) or load a model folder")
        return self.reference

    def compare(self, query: np.ndarray, reference: np.ndarray,
                ref_valid: np.ndarray | None = None) -> tuple[Alignment, Change | None]:
        """Align `reference` onto `query` (H, W[, 3]) uint8 and compute the change map (None if alignment failed)."""
        al = align(reference, query, detector=self.config.detector, ref_valid=ref_valid,
                   ecc_levels=tuple(self.config.ecc_levels))
        if not al.ok:
            return al, None
        fq = fr = None
        if self.config.use_features and self.config.change.feature_weight > 0:
            rgb = [np.ascontiguousarray(a if a.ndim == 3 else np.repeat(a[..., None], 3, 2)) for a in (query, al.warped)]
            f = self.extractor.extract(np.stack(rgb))
            fq, fr = f[0], f[1]
        return al, change_map(query, al.warped, al.valid, fq, fr, self.config.change)

    def _open_query(self, source: Any) -> Any:
        """Open a query run at the reference's frame size; other aspect ratio -> InputError before any work."""
        from oddeye.core.videoio import VideoReader, open_video

        ref = self._need_reference()
        probe = source if isinstance(source, VideoReader) else open_video(source)
        w, h = probe.width, probe.height
        rw, rh = ref.size
        if abs((w / h) / (rw / rh) - 1) > 0.02:
            raise InputError(f"query {probe.source} is {w}x{h} but the reference frames are {rw}x{rh}: "
                             "different aspect ratios", "record both runs with the same camera settings")
        if (w, h) != (rw, rh) and frame_size(w, h, self.config.max_side) != (rw, rh):
            warnings.warn(f"query {probe.source} ({w}x{h}) resized to the reference's {rw}x{rh}", stacklevel=3)
        if isinstance(source, VideoReader):
            return source
        probe.close()
        return open_video(source, size=(rw, rh))

    def score(self, queries: Iterable[Any] | str | Path, poses: str | Path | None = None,
              overlays: str | Path | None = None) -> Result:
        """Score query runs (videos, frame folders or VideoReaders): one Score per run, events per flagged span."""
        ref = self._need_reference()
        if self.config.pairing.pose_radius is not None and (poses is None or ref.poses is None):
            raise InputError("a pose radius needs poses for both the reference and the query",
                             "fit with --poses and score with --poses, or drop --pose-radius")
        if isinstance(queries, (str, Path)) or hasattr(queries, "get_batch"):
            queries = [queries]
        result = Result(head=NAME, threshold=self.config.event_threshold,
                        meta={"reference": ref.meta.get("original_source") or ref.source, "reference_frames": len(ref),
                              "config": asdict(self.config)})
        queries = list(queries)
        for q in queries:
            try:
                score, events = self._score_run(q, poses, overlays)
            except OddeyeError as e:
                if len(queries) == 1:
                    raise
                # one unreadable run among several: say so in its Score and go on with the others
                score, events = Score(sample_id=Path(str(q)).stem or str(q), score=float("nan"),
                                      reason=f"not scored: {e.message}", meta={"source": str(q)}), []
            result.scores.append(score)
            result.events.extend(events)
        return result

    def _score_run(self, source: Any, poses: str | Path | None, overlays: str | Path | None) -> tuple[Score, list]:
        self._need_reference()  # raises if no reference run is loaded
        reader = self._open_query(source)
        name = Path(str(reader.source)).stem or str(reader.source)
        n = reader.n_frames
        table = read_poses(poses, n) if poses is not None else None
        records: list[FrameRecord] = []
        maps: dict[str, AnomalyMap] = {}
        cache: dict[int, np.ndarray] = {}
        self._previous: int | None = None
        self._last_good: int | None = None  # reference frame of the last well-aligned query frame
        bar = tqdm(total=n, desc=f"patrol {name}", unit="frame", leave=False)
        try:
            for fr in reader.iter_batches(16):
                self._score_batch(fr, table, records, maps, cache, name, overlays)
                bar.update(len(fr))
        except Exception as e:  # noqa: BLE001 - a truncated/corrupt video: keep what was scored
            records.append(FrameRecord(-1, float("nan"), "error", reason=f"reading stopped: {_brief(e)}"))
        finally:
            bar.close()
        done = [r for r in records if r.index >= 0]
        s = np.array([r.score for r in done], np.float64)
        t = np.array([r.time for r in done], np.float64)
        idx = np.array([r.index for r in done], np.int64)
        reasons = [r.reason for r in done]
        s_ev = np.where(np.isfinite(s), s, -np.inf)  # frames without a score never peak an event
        events = events_from_scores(s_ev, self.config.event_threshold, name, times=t, frame_indices=idx,
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
        score = Score(sample_id=name, score=total, maps=maps, frame_scores=s, frame_times=t, frame_indices=idx,
                      reason=summary, meta={"frames": [asdict(r) for r in records], "counts": counts,
                                            "source": str(reader.source)})
        return score, events

    def _score_batch(self, fr: Any, table: dict | None, records: list[FrameRecord], maps: dict,
                     cache: dict[int, np.ndarray], name: str, overlays: str | Path | None) -> None:
        ref = self._need_reference()
        times, qposes = lookup_poses(table, fr.indices, fr.times)
        try:
            descs = self.describer.global_descriptor(fr.data)
            pairs = pair_frames(ref, descs, self.config.pairing, fr.indices, times, qposes, previous=self._previous)
            self._previous = next((pr.ref_index for pr in reversed(pairs) if pr.ref_index is not None), self._previous)
        except Exception as e:  # noqa: BLE001 - one bad batch must not end the run
            for i, t in zip(fr.indices, times):
                records.append(FrameRecord(int(i), float(t), "error", reason=f"pairing failed: {_brief(e)}"))
            return
        for img, i, t, pr in zip(fr.data, fr.indices, times, pairs):
            rec = FrameRecord(int(i), float(t), "ok" if pr.status == "ok" else "no_reference",
                              ref_index=pr.ref_index, similarity=_r(pr.similarity), margin=_r(pr.margin))
            records.append(rec)
            if pr.ref_index is None:
                rec.reason = pr.reason
                continue
            try:
                al, ch = self.compare(img, self._ref_frame(cache, pr.ref_index))
                route_ref = None if self._last_good is None else min(self._last_good + 1, len(ref) - 1)
                if not verified(al) and route_ref is not None and route_ref != pr.ref_index:
                    # the descriptors may have been fooled (e.g. by a large new object): try the route position
                    al2, ch2 = self.compare(img, self._ref_frame(cache, route_ref))
                    if verified(al2):
                        al, ch, rec.ref_index = al2, ch2, route_ref
                        pr.status = "ok"
                        rec.reason = f"paired by route order with reference frame {route_ref}"
                if verified(al):
                    self._last_good = rec.ref_index
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
                if ch.score > self.config.event_threshold:
                    rec.reason = (f"{len(ch.boxes)} changed region(s) vs reference frame {rec.ref_index} "
                                  f"(similarity {pr.similarity:.2f}, {al.method})")
                    self._keep_map(maps, rec, ch, img, al.warped, name, overlays)
            except Exception as e:  # noqa: BLE001 - record the failure, keep going
                rec.status, rec.reason = "error", f"frame {int(i)} failed: {_brief(e)}"

    def _ref_frame(self, cache: dict[int, np.ndarray], i: int) -> np.ndarray:
        """Reference frame `i` (H, W, 3), from a small cache (consecutive query frames share references)."""
        if i not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[i] = self._need_reference().frames([i])[0]
        return cache[i]

    def _keep_map(self, maps: dict, rec: FrameRecord, ch: Change, img: np.ndarray, ref_img: np.ndarray, name: str,
                  overlays: str | Path | None) -> None:
        if len(maps) < self.config.max_maps:
            h, w = ch.map.shape
            s = min(1.0, self.config.map_side / max(h, w))
            small = cv2.resize(ch.map, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            maps[f"frame_{rec.index:06d}"] = AnomalyMap("pixel", small)
        if overlays is not None:
            from oddeye.core.imageio import write_image
            from oddeye.patrol.viz import save_change_overlay

            base = Path(overlays) / f"{name}_{rec.index:06d}"
            rec.artefacts = {"change": str(save_change_overlay(f"{base}_change.png", img, ch)),
                             "query": str(write_image(f"{base}_query.png", img)),
                             "reference": str(write_image(f"{base}_reference.png", ref_img))}

    def save(self, directory: str | Path) -> Path:
        """Write the reference run, config and manifest (head 'patrol') to `directory`."""
        ref = self._need_reference()
        d = Path(directory)
        ref.save(d)
        (d / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1))
        write_manifest(d, NAME, reference_frames=len(ref), frame_size=list(ref.size))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PatrolHead:
        """Read a model folder written by save(); another head's folder is a ModelError."""
        d = Path(directory)
        read_manifest(d, head=NAME, max_version=1)
        try:
            cfg = PatrolConfig.from_dict(json.loads((d / CONFIG_FILE).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ModelError(f"{d / CONFIG_FILE} is missing or corrupt ({e})", "refit with `oddeye fit patrol`") from None
        head = cls(cfg)
        head.reference = ReferenceRun.load(d)
        return head


def verified(al: Alignment, min_inliers: int = 15, min_ecc: float = 0.85) -> bool:
    """True if an alignment is good enough to trust a pairing the descriptors were unsure of."""
    if not al.ok or al.method == "flow":
        return False
    if al.method == "identity":  # nothing to warp: the frames must already agree closely
        return al.residual <= 0.05
    return al.n_inliers >= min_inliers or (al.ecc_corr or 0.0) >= min_ecc


def _r(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _brief(e: BaseException) -> str:
    msg = e.message if isinstance(e, OddeyeError) else str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"
