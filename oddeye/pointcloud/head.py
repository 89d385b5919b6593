"""PointCloudHead: FPFH (optionally adapted) memory bank in PatchIndex, kNN point scores; surface field optional."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Self

import numpy as np

from oddeye.core.config import n_threads
from oddeye.core.errors import EmptyDataError, ModelError, require_positive, require_range
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.types import AnomalyMap, Event, Result, Score
from oddeye.pointcloud.adapt import Adapter, train_adapter
from oddeye.pointcloud.features import FeatureConfig, auto_voxel_size, raw_features
from oddeye.pointcloud.io import Cloud, finish_cloud, load_cloud
from oddeye.pointcloud.preprocess import extent, preprocess
from oddeye.pointcloud.field import SurfaceField, pool_mean

NAME = "pointcloud"
FORMAT = 2
# what a model saved before each of these options existed did (its config.json lacks the key): load() fills them
# in, so an old model scores as it did when fitted and its threshold stays valid
BEFORE_OPTION = {"surface_region": 0.0, "surface_single": 1.0, "hole_reach": 2, "feature_weight": 1.0,
                 "surface_agree": 0.0, "hole_shape": False}


@dataclass
class CloudScores:
    """Scores of one cloud: object score, per-point scores (N,), per-voxel scores (M,), voxel centres (M, 3)."""

    score: float
    points: np.ndarray
    voxels: np.ndarray
    voxel_xyz: np.ndarray
    hot: np.ndarray  # (3,) xyz of the highest-scoring voxel
    in_band: float | None = None  # with a surface field: the share of points near the training surface


def as_cloud(sample: Any) -> Cloud:
    """A Cloud from a Cloud, a path, or an (N, 3) array."""
    if isinstance(sample, Cloud):
        return sample
    if isinstance(sample, (str, Path)):
        return load_cloud(sample)
    arr = np.asarray(sample)
    return finish_cloud(arr, f"array{tuple(arr.shape)}")


class PointCloudHead:
    """Memory-bank anomaly head for point clouds (BTF/PatchCore on FPFH, LSFA-style adaptation optional)."""

    name = NAME

    def __init__(self, *, adapt: bool = True, target_points: int = 3000, voxel_size: float | None = None,
                 radii: tuple[float, ...] = (4.0,), max_nn_fpfh: int = 30, bank_max: int = 20000, k: int = 1,
                 smooth_k: int = 6, topk: int = 5, adapt_steps: int = 400, outliers: bool = False,
                 plane: bool = False, position_weight: float = 0.0, keep_raw: bool = False, seed: int = 0,
                 surface_weight: float = 0.0, surface_voxel: float = 0.25, surface_pool: float = 6.0,
                 surface_region: float = 20.0, surface_map_scales: tuple[float, ...] = (1.0, 1.5, 2.0),
                 hole_weight: float = 0.0, surface_single: float = 0.25, hole_reach: int = 6,
                 feature_weight: float = 0.125, surface_agree: float = 0.3, hole_shape: bool = True,
                 progress: bool = True) -> None:
        for name, value in {"position_weight": position_weight, "surface_weight": surface_weight,
                            "hole_weight": hole_weight, "feature_weight": feature_weight,
                            "hole_reach": hole_reach}.items():
            require_positive(value, name, allow_zero=True)
        require_range(surface_single, "surface_single", 0.0, 1.0)
        require_range(surface_agree, "surface_agree", 0.0, 1.0)
        self.params = {"adapt": adapt, "target_points": target_points, "voxel_size": voxel_size, "radii": list(radii),
                       "max_nn_fpfh": max_nn_fpfh, "bank_max": bank_max, "k": k, "smooth_k": smooth_k, "topk": topk,
                       "adapt_steps": adapt_steps, "outliers": outliers, "plane": plane,
                       "position_weight": position_weight, "keep_raw": keep_raw, "seed": seed,
                       "surface_weight": surface_weight, "surface_voxel": surface_voxel,
                       "surface_pool": surface_pool, "surface_region": surface_region,
                       "surface_map_scales": list(surface_map_scales),
                       "hole_weight": hole_weight, "surface_single": surface_single, "hole_reach": hole_reach,
                       "feature_weight": feature_weight, "surface_agree": surface_agree, "hole_shape": hole_shape}
        self.progress = progress
        self.cfg: FeatureConfig | None = None
        self.adapter: Adapter | None = None
        self.index = None
        self.surface: SurfaceField | None = None
        self.threshold: float | None = None
        self.fit_info: dict[str, Any] = {}

    # ---- features ------------------------------------------------------------------------------------
    def _clean(self, cloud: Cloud) -> tuple[Cloud, dict[str, Any]]:
        """Apply the configured preprocessing (seeded) and return the kept cloud and its record."""
        if not (self.params["outliers"] or self.params["plane"]):
            return cloud, {}
        keep, rec = preprocess(cloud.points, outliers=self.params["outliers"], plane=self.params["plane"],
                               seed=self.params["seed"], source=cloud.name)
        return cloud.subset(keep), rec

    def embed(self, points: np.ndarray) -> tuple[Any, np.ndarray]:
        """Voxelize + FPFH (+ adapter) of points (N, 3) -> (Voxelized, features (M, D) float32).

        With position_weight w > 0 (clouds registered into one frame), w * xyz / voxel_size is appended, so a
        point is compared with normal shapes found at the same place (w = feature distance per voxel of offset).
        """
        if self.cfg is None:
            raise ModelError("this PointCloudHead is not fitted", "call fit() or load a model directory")
        vox, f = raw_features(points, self.cfg)
        z = f
        if self.adapter is not None:
            z = np.concatenate([f, self.adapter(f)], axis=1) if self.params.get("keep_raw") else self.adapter(f)
        w = float(self.params.get("position_weight") or 0.0)
        if w > 0:
            z = np.concatenate([z, (w / self.cfg.voxel_size) * vox.points.astype(np.float32)], axis=1)
        return vox, z

    # ---- fit -----------------------------------------------------------------------------------------
    def fit(self, samples: Iterable[Any]) -> Self:
        """Learn normal local geometry from normal clouds (Clouds, paths or (N, 3) arrays)."""
        from tqdm.auto import tqdm

        from oddeye.retrieval.coreset import greedy_coreset
        from oddeye.retrieval.index import PatchIndex

        t0 = time.perf_counter()
        clouds = [self._clean(as_cloud(s))[0] for s in samples]
        if not clouds:
            raise EmptyDataError("fit needs at least one normal point cloud", "pass --train DIR or files")
        pts = [c.points.astype(np.float64) for c in clouds]
        p = self.params
        vs = p["voxel_size"] or auto_voxel_size(pts, p["target_points"])
        self.cfg = FeatureConfig(vs, radii=tuple(p["radii"]), max_nn_fpfh=p["max_nn_fpfh"])
        self.adapter = None
        if p["adapt"]:
            self.adapter = train_adapter(pts, self.cfg, steps=p["adapt_steps"], seed=p["seed"], progress=self.progress)
        feats = [self.embed(x)[1] for x in tqdm(pts, desc="bank features", disable=not self.progress, leave=False)]
        bank = np.concatenate(feats)
        n_bank = min(p["bank_max"], len(bank))
        ids = greedy_coreset(bank, count=n_bank, seed=p["seed"], progress=False) if n_bank < len(bank) else np.arange(len(bank))
        # a large bank goes into IVF (~80 vectors a list, 4 probed): with the xyz part of the features the lists
        # are places, and on bunny scans the nearest distances equal flat search's (docs/pointcloud.md)
        ivf = {"kind": "ivf", "nlist": len(ids) // 80, "nprobe": 4} if len(ids) > 10000 else {"kind": "flat"}
        self.index = PatchIndex.build(bank[ids], progress=False, **ivf)
        self.surface = SurfaceField.fit(pts, p["surface_voxel"] * vs) if p.get("surface_weight") else None
        # threshold: the highest object score of augmented (resampled, jittered) views of the training clouds
        rng = np.random.default_rng(p["seed"] + 1)
        calib = []
        for x in pts:
            sel = rng.random(len(x)) < 0.9
            calib.append(self.score_points(x[sel] + rng.normal(scale=0.02 * vs, size=x[sel].shape)).score)
        self.threshold = float(max(calib))
        self.fit_info = {"n_clouds": len(clouds), "n_bank_all": int(len(bank)), "n_bank": int(len(ids)),
                         "extent": float(np.median([extent(x) for x in pts])),
                         "voxel_size": vs, "fit_s": round(time.perf_counter() - t0, 2), "calibration_scores": calib,
                         "adapter": self.adapter.info if self.adapter else None}
        return self

    # ---- score ---------------------------------------------------------------------------------------
    def score_points(self, points: np.ndarray) -> CloudScores:
        """Score one cloud (N, 3): kNN distance per voxel, smoothed over spatial neighbours, mapped to points.

        With surface_weight w > 0 (registered clouds, field.py): point score = its voxel's score + w * |its signed
        surface deviation (fine voxels) pooled over cells of `surface_pool` fine voxels, less the mean over cells of
        `surface_region` fine voxels|; object score = the highest pooled
        w * deviation among cells of 3 points or more (a dent of a few mm is a handful of cells: a top-k mean drowns it).
        With hole_weight h > 0: + h * the area of the largest hole (field.holes) to both; for points, that of the
        largest hole within `hole_reach` cells (1.5 fine voxels each), so a hole's rim carries its score; with
        `hole_shape` each hole's area is divided by its elongation (a band of missing cells is a scanner's gap).
        With the surface field the voxel score enters the point map x `feature_weight`, and a point is compared only
        with bank surface whose normal makes |cosine| > `surface_agree` with its voxel's normal.
        """
        from oddeye.retrieval.index import PatchIndex

        if self.index is None:
            raise ModelError("this PointCloudHead is not fitted", "call fit() or load a model directory")
        pts = np.asarray(points, dtype=np.float64)
        vox, z = self.embed(pts)
        if self.surface is not None and n_threads() > 1:
            # the bank search (FAISS, which lets go of the GIL) runs beside the surface terms (numpy)
            with ThreadPoolExecutor(1) as pool:
                knn = pool.submit(self.index.search, z, self.params["k"])
                terms = self._surface_terms(pts, vox)
                dist = knn.result()[0]
        else:
            dist = self.index.search(z, k=self.params["k"])[0]
            terms = self._surface_terms(pts, vox) if self.surface is not None else None
        v = dist.mean(axis=1)
        m = len(v)
        sk = min(self.params["smooth_k"], m)
        if sk > 1 and self.surface is not None:  # pooled over cells of 2 voxels (two grids): no search
            v = pool_mean(vox.points, v, 2.0 * self.cfg.voxel_size)[0]
        elif sk > 1:
            xyz = vox.points.astype(np.float32)
            _, nb = PatchIndex.build(xyz, kind="flat", progress=False).search(xyz, k=sk)
            v = v[nb].mean(axis=1)
        pv = v[vox.inverse]
        if terms is None:
            top = np.sort(v)[-min(self.params["topk"], m):]
            return CloudScores(float(top.mean()), pv.astype(np.float32), v.astype(np.float32), vox.points,
                               vox.points[int(np.argmax(v))])
        smap, sm, cnt, hole, in_band = terms
        # beside the surface terms the features' kNN score counts `feature_weight`
        pv = float(self.params["feature_weight"]) * pv + smap
        ok = cnt >= 3 if (cnt >= 3).any() else np.ones(len(pv), dtype=bool)
        # object score from the surface term alone: on held-out bunny scans the features' outliers (view-dependent
        # sampling, scan borders) only added noise to the clean clouds' maxima (validation splits, docs)
        best = int(np.flatnonzero(ok)[np.argmax(sm[ok])])
        v = np.full(m, -np.inf)
        np.maximum.at(v, vox.inverse, pv)
        return CloudScores(float(sm[best]) + hole, pv.astype(np.float32), v.astype(np.float32), vox.points,
                           pts[best], in_band)

    def _surface_terms(self, pts: np.ndarray, vox: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Surface-field terms of points (N, 3) with their FPFH voxels: map (N,) = surface_weight x |pooled
        deviation| over the map scales + hole_weight x the nearby hole's area, the deviation at 1 x surface_pool
        (N,) for the object score, pool counts (N,), hole_weight x the largest hole area, and the share of points
        inside the field's band."""
        p, fine = self.params, self.surface.fine
        agree = float(p["surface_agree"])
        dev, ids = self.surface.deviation(pts, signed=True, single=float(p["surface_single"]),
                                          normals=vox.normals[vox.inverse] if agree > 0 else None, agree=agree)
        pool = float(p["surface_pool"]) * fine
        sm, cnt = pool_mean(pts, dev, pool)
        region = float(p["surface_region"])
        base = pool_mean(pts, sm, region * fine)[0] if region > 0 else 0.0  # a broad offset is not a defect
        sw = float(p["surface_weight"])
        # map: mean over pooling at 1, 1.5 and 2 x surface_pool (a defect's rim gets its share); object: 1 x
        smap = sw * np.mean([np.abs(pool_mean(pts, dev, f * pool)[0] - base) if f > 1 else np.abs(sm - base)
                             for f in p["surface_map_scales"]], axis=0)
        hw = float(p["hole_weight"])
        holes, hole = (self.surface.holes(pts, ids, reach=int(p["hole_reach"]), by_shape=bool(p["hole_shape"]))
                       if hw > 0 else (0.0, 0.0))
        return smap + hw * holes, sw * np.abs(sm - base), cnt, hw * hole, float((ids[:, 0] >= 0).mean())

    def score(self, samples: Iterable[Any]) -> Result:
        """Score clouds -> Result: one Score per cloud with a 'points' map (N,), an Event where above threshold."""
        from tqdm.auto import tqdm

        res = Result(head=NAME, threshold=self.threshold, meta={"params": self.params})
        for s in tqdm(list(samples), desc="score clouds", disable=not self.progress, leave=False):
            cloud, rec = self._clean(as_cloud(s))
            t = time.perf_counter()
            cs = self.score_points(cloud.points)
            dt = time.perf_counter() - t
            sid = cloud.name
            label = None if cloud.labels is None else int(cloud.labels.max() > 0)
            hot = ", ".join(f"{c:.4g}" for c in cs.hot)
            reason = f"most unusual local shape near ({hot}) {cloud.meta.get('units', '')}".rstrip()
            sc = Score(sid, cs.score, label, maps={"points": AnomalyMap("point", cs.points)}, reason=reason,
                       meta={"n_points": len(cloud), "n_voxels": len(cs.voxels), "score_s": round(dt, 4),
                             "source": cloud.meta.get("source"), "dropped_nonfinite": cloud.meta.get("dropped_nonfinite"),
                             "preprocess": rec, "in_band": cs.in_band, **self._check_frame(cloud, cs)})
            res.scores.append(sc)
            if self.threshold is not None and cs.score > self.threshold:
                res.events.append(Event(sid, cs.score, reason=reason, meta={"hot_xyz": cs.hot.tolist()}))
        return res

    def _check_frame(self, cloud: Cloud, cs: CloudScores) -> dict[str, float]:
        """Warn where a cloud cannot be compared with the training clouds: another size (units?) or, with a
        surface field, mostly away from the training surface (not registered?); the ratio for Score.meta."""
        import warnings

        ref = self.fit_info.get("extent")
        ratio = extent(cloud.points) / ref if ref else 1.0
        if not 0.25 <= ratio <= 4.0:
            warnings.warn(f"{cloud.name}: {ratio:.3g} x the size of the training clouds: other units (mm vs m)? "
                          "Scores compare local shape at the training scale; convert the cloud first", stacklevel=3)
        if cs.in_band is not None and cs.in_band < 0.5:
            warnings.warn(f"{cloud.name}: only {100 * cs.in_band:.0f}% of its points lie near the training surface: "
                          "is it registered into the training clouds' frame? The surface terms need that "
                          "(--surface-weight 0 for clouds that are not)", stacklevel=3)
        return {"size_vs_train": round(float(ratio), 4)}

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write manifest, bank index, adapter (safetensors) and config to `directory`."""
        if self.index is None or self.cfg is None:
            raise ModelError("cannot save an unfitted PointCloudHead", "call fit() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.index.save(d / "bank")
        if self.adapter is not None:
            self.adapter.save(d)
        if self.surface is not None:
            self.surface.save(d)
        (d / "config.json").write_text(json.dumps({"params": self.params, "features": self.cfg.to_dict(),
                                                   "threshold": self.threshold}, indent=1))
        write_manifest(d, NAME, FORMAT, adapted=self.adapter is not None, fit=self.fit_info)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a head written by save(); another head's directory is a ModelError."""
        from oddeye.retrieval.index import PatchIndex

        d = Path(directory)
        doc = read_manifest(d, head=NAME, max_version=FORMAT)
        try:
            conf = json.loads((d / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{d / 'config.json'} is missing or corrupt ({e})", "refit the model") from None
        saved = {**BEFORE_OPTION, **conf["params"]}
        head = cls(progress=False, **{k: (tuple(v) if k == "radii" else v) for k, v in saved.items()})
        head.cfg = FeatureConfig.from_dict(conf["features"])
        head.threshold = conf.get("threshold")
        head.adapter = Adapter.load(d) if doc.get("adapted") else None
        head.index = PatchIndex.load(d / "bank")
        head.surface = SurfaceField.load(d) if head.params.get("surface_weight") else None
        head.fit_info = doc.get("fit", {})
        want = ((head.adapter.dim_out if head.adapter else 0) + (head.cfg.dim if not head.adapter or head.params.get("keep_raw")
                else 0) + (3 if head.params["position_weight"] else 0))
        if head.index.dim != want:
            raise ModelError(f"{d}: bank dimension {head.index.dim} does not match the features", "refit the model")
        return head

