"""Align a reference frame onto a query frame: ORB/AKAZE + RANSAC homography, ECC refinement, dense-flow fallback."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.imageio import convert

# below these a frame has too little light or structure to match features or run ECC on
MIN_MEAN = 8.0
MIN_STD = 3.0


@dataclass
class Alignment:
    """The reference warped into the query's frame, the homography (reference -> query) and its quality."""

    ok: bool
    method: str  # "features", "features+ecc", "ecc", "flow" or "failed"
    homography: np.ndarray  # (3, 3) float64, maps reference pixel coords to query pixel coords
    warped: np.ndarray  # (H, W[, 3]) uint8 reference in query coords; pixels outside it are filled from the query
    valid: np.ndarray  # (H, W) bool, where the warped reference has real pixels
    n_matches: int = 0
    n_inliers: int = 0
    inlier_ratio: float = 0.0
    ecc_corr: float | None = None
    residual: float = float("nan")  # mean |query - warped| / 255 over valid pixels (after a light blur)
    residual_before: float = float("nan")  # the same without alignment
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    def quality(self) -> dict[str, float | int | str | bool | None]:
        """The alignment figures as a JSON-able dict."""
        return {"ok": self.ok, "method": self.method, "n_matches": self.n_matches, "n_inliers": self.n_inliers,
                "inlier_ratio": round(self.inlier_ratio, 4),
                "ecc_corr": None if self.ecc_corr is None else round(self.ecc_corr, 4),
                "residual": round(self.residual, 4), "residual_before": round(self.residual_before, 4),
                "message": self.message}


def match_sizes(reference: np.ndarray, query: np.ndarray, tol: float = 0.02) -> tuple[np.ndarray, str | None]:
    """Resize `reference` (H, W[, C]) to the query's size if only the scale differs; other aspect -> InputError."""
    rh, rw = reference.shape[:2]
    qh, qw = query.shape[:2]
    if (rh, rw) == (qh, qw):
        return reference, None
    if abs((rw / rh) / (qw / qh) - 1.0) > tol:
        raise InputError(f"reference frame is {rw}x{rh} but query frame is {qw}x{qh}: different aspect ratios",
                         "record reference and query with the same camera settings, or crop both to one aspect")
    msg = f"reference {rw}x{rh} resized to the query's {qw}x{qh} (same aspect, different scale)"
    warnings.warn(msg, stacklevel=2)
    return cv2.resize(reference, (qw, qh), interpolation=cv2.INTER_AREA), msg


def texture_problem(gray: np.ndarray, name: str) -> str | None:
    """A sentence if `gray` (H, W) uint8 is too dark or textureless to align, else None."""
    mean, std = float(gray.mean()), float(gray.std())
    if mean < MIN_MEAN:
        return f"{name} frame is too dark to align (mean brightness {mean:.1f}/255)"
    if std < MIN_STD:
        return f"{name} frame is too textureless to align (contrast std {std:.1f}/255)"
    return None


def _detector(kind: str, max_features: int) -> cv2.Feature2D:
    if kind == "orb":
        return cv2.ORB_create(nfeatures=max_features, fastThreshold=10)
    if kind == "akaze" and hasattr(cv2, "AKAZE_create"):
        return cv2.AKAZE_create(threshold=5e-4)
    if kind == "sift":
        return cv2.SIFT_create(nfeatures=max_features)
    have = "'orb', 'sift'" + (", 'akaze'" if hasattr(cv2, "AKAZE_create") else " (this OpenCV build has no AKAZE)")
    raise InputError(f"unknown or unavailable feature detector {kind!r}", f"use one of {have}")


def feature_homography(ref: np.ndarray, qry: np.ndarray, detector: str = "orb", max_features: int = 1500,
                       ratio: float = 0.85, ransac_px: float = 3.0,
                       side: int = 480) -> tuple[np.ndarray | None, int, int]:
    """Homography (3, 3) reference -> query from gray uint8 images via matched keypoints + RANSAC, or None.

    Keypoints are found on the pair scaled to longest side `side` (ECC refines at finer scales afterwards).
    """
    h, w = qry.shape[:2]
    s = min(1.0, side / max(h, w))
    if s < 1.0:
        size = (round(w * s), round(h * s))
        ref = cv2.resize(ref, size, interpolation=cv2.INTER_AREA)
        qry = cv2.resize(qry, size, interpolation=cv2.INTER_AREA)
    det = _detector(detector, max_features)
    k1, d1 = det.detectAndCompute(ref, None)
    k2, d2 = det.detectAndCompute(qry, None)
    if d1 is None or d2 is None or len(k1) < 8 or len(k2) < 8:
        return None, 0, 0
    matcher = cv2.BFMatcher(cv2.NORM_L2 if detector == "sift" else cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(d1, d2, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 8:
        return None, len(good), 0
    src = np.float32([k1[m.queryIdx].pt for m in good])
    dst = np.float32([k2[m.trainIdx].pt for m in good])
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px, maxIters=2000, confidence=0.995)
    if H is None or inl is None:
        return None, len(good), 0
    n_in = int(inl.sum())
    if n_in < 8 or not plausible(H, ref.shape):
        return None, len(good), n_in
    if s < 1.0:
        S = np.diag([s, s, 1.0])
        H = np.linalg.inv(S) @ H @ S
    return H / H[2, 2], len(good), n_in


def plausible(H: np.ndarray, shape: tuple[int, ...], max_scale: float = 2.0) -> bool:
    """True if homography H keeps the frame's corners in order and its area within [1/max_scale, max_scale]."""
    h, w = shape[:2]
    c = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    m = cv2.perspectiveTransform(c, H).reshape(-1, 2)
    if not np.all(np.isfinite(m)) or not cv2.isContourConvex(m.astype(np.float32)):
        return False
    area = cv2.contourArea(m.astype(np.float32))
    return 1.0 / max_scale <= area / float(w * h) <= max_scale


def _ecc_level(ref: np.ndarray, qry: np.ndarray, H0: np.ndarray, side: int, iters: int,
               eps: float) -> tuple[np.ndarray | None, float | None]:
    """One ECC run on the pair scaled to longest side `side`; H0 and the result map reference -> query (full res)."""
    h, w = qry.shape[:2]
    s = min(1.0, side / max(h, w))
    size = (max(8, round(w * s)), max(8, round(h * s)))
    q = cv2.GaussianBlur(cv2.resize(qry, size, interpolation=cv2.INTER_AREA), (5, 5), 0).astype(np.float32)
    r = cv2.GaussianBlur(cv2.resize(ref, size, interpolation=cv2.INTER_AREA), (5, 5), 0).astype(np.float32)
    S = np.diag([size[0] / w, size[1] / h, 1.0])
    warp = np.linalg.inv(S @ H0 @ np.linalg.inv(S)).astype(np.float32)  # ECC warps template (query) -> input
    warp /= warp[2, 2]
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iters, eps)
    try:
        corr, warp = cv2.findTransformECC(q, r, warp, cv2.MOTION_HOMOGRAPHY, crit, None, 3)
    except cv2.error:
        return None, None
    H = np.linalg.inv(S) @ np.linalg.inv(warp.astype(np.float64)) @ S
    return H / H[2, 2], float(corr)


def ecc_refine(ref: np.ndarray, qry: np.ndarray, H0: np.ndarray, levels: tuple[int, ...] = (128, 256, 448),
               iters: tuple[int, ...] = (40, 20, 8), eps: float = 1e-4) -> tuple[np.ndarray | None, float | None]:
    """Refine H0 (reference -> query) by coarse-to-fine ECC on gray uint8 images; (H, correlation) or (None, None)."""
    H, corr = H0, None
    for side, n in zip(levels, iters):
        if side > 2 * max(qry.shape[:2]):
            break
        Hn, c = _ecc_level(ref, qry, H, side, n, eps)
        if Hn is None or not plausible(Hn, qry.shape):
            if corr is None:  # the coarse level must converge; finer levels may fail and keep the coarse result
                return None, None
            break
        H, corr = Hn, c
    return H, corr


def flow_warp(ref: np.ndarray, qry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense DIS optical flow query -> reference; return (map_x, map_y) float32 (H, W) for cv2.remap."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(qry, ref, None)
    h, w = qry.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def _residual(a: np.ndarray, b: np.ndarray, valid: np.ndarray, side: int = 320) -> float:
    """Mean |a - b| / 255 over `valid` after a light blur, on copies scaled to longest side `side`."""
    if not valid.any():
        return float("nan")
    h, w = a.shape[:2]
    s = min(1.0, side / max(h, w))
    if s < 1.0:
        size = (max(8, round(w * s)), max(8, round(h * s)))
        a, b = cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        if not valid.any():
            return float("nan")
    d = np.abs(cv2.GaussianBlur(a, (3, 3), 0).astype(np.float32) - cv2.GaussianBlur(b, (3, 3), 0))
    return float(d[valid].mean() / 255.0)


def align(reference: np.ndarray, query: np.ndarray, detector: str = "orb", use_ecc: bool = True,
          use_flow: bool = True, min_inliers: int = 12, min_ecc: float = 0.6,
          ecc_levels: tuple[int, ...] = (128, 256), ecc_skip: float = 0.95,
          max_features: int = 1500, ref_valid: np.ndarray | None = None, flow_above: float = 0.04,
          max_residual: float = 0.12) -> Alignment:
    """Warp `reference` (H, W[, 3]) uint8 onto `query` (same size or scale): features + RANSAC, ECC, flow fallback.

    `ref_valid` (H, W) bool marks where the reference has real content (default: everywhere).
    """
    ref_img, size_msg = match_sizes(reference, query)
    if ref_valid is not None and ref_valid.shape != ref_img.shape[:2]:
        ref_valid = cv2.resize(ref_valid.astype(np.uint8), ref_img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    rg, qg = convert(ref_img, "gray"), convert(query, "gray")
    h, w = qg.shape
    ident = np.eye(3)
    full = np.ones((h, w), bool)
    before = _residual(rg, qg, full)
    notes = [size_msg] if size_msg else []
    problem = texture_problem(qg, "query") or texture_problem(rg, "reference")
    if problem:
        return Alignment(False, "failed", ident, ref_img.copy(), full, residual=before, residual_before=before,
                         message=problem + "; not aligned", warnings=notes)
    cands: list[tuple[str, np.ndarray]] = [("identity", ident)]
    n_m = n_in = 0
    corr = None
    if use_ecc:  # small motions: ECC from the identity is enough and cheaper than matching keypoints
        H_ecc, corr = ecc_refine(rg, qg, ident, levels=ecc_levels)
        if H_ecc is not None and corr is not None and corr >= ecc_skip:
            cands.append(("ecc", H_ecc))
    if len(cands) == 1:
        H, n_m, n_in = feature_homography(rg, qg, detector, max_features)
        if H is None or n_in < min_inliers:
            notes.append(f"feature matching failed ({n_in} RANSAC inliers of {n_m} matches)")
        else:
            cands.append(("features", H))
            if use_ecc:
                H_ecc, c = ecc_refine(rg, qg, H, levels=ecc_levels)
                if H_ecc is not None and c is not None and c >= min_ecc:
                    cands.append(("features+ecc", H_ecc))
                    corr = c
        if use_ecc and len(cands) == 1:
            if corr is not None and corr >= min_ecc:  # ECC from the identity converged, if not above ecc_skip
                cands.append(("ecc", H_ecc))
            else:
                notes.append("ECC did not converge")
    src_valid = np.ones((h, w), np.uint8) if ref_valid is None else ref_valid.astype(np.uint8)
    best = None
    for name, Hc in cands:  # keep the candidate that explains the query best (identity if already aligned)
        wg = cv2.warpPerspective(rg, Hc, (w, h), flags=cv2.INTER_LINEAR)
        valid = cv2.warpPerspective(src_valid, Hc, (w, h), flags=cv2.INTER_NEAREST) > 0
        valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        res = _residual(wg, qg, valid)
        if best is None or res < best[2] - 1e-4:
            best = (name, Hc, res, valid)
    method, H, res, valid = best
    warped = cv2.warpPerspective(ref_img, H, (w, h), flags=cv2.INTER_LINEAR) if method != "identity" else ref_img
    if method == "identity" and len(cands) == 1 and use_flow and res > flow_above:
        mx, my = flow_warp(rg, qg)
        fw = cv2.remap(ref_img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        fvalid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        fvalid &= cv2.remap(src_valid, mx, my, cv2.INTER_NEAREST) > 0
        fres = _residual(convert(fw, "gray"), qg, fvalid)
        if fres < res:
            method, warped, valid, res = "flow", fw, fvalid, fres
            notes.append("fell back to dense optical flow (no homography found); small changes may be partly "
                         "warped away")
    fill = ~valid
    if fill.any():  # outside the reference's footprint, compare the query with itself (no change there)
        warped = warped.copy()
        warped[fill] = convert(query, "rgb" if warped.ndim == 3 else "gray")[fill]
    ok = res <= max_residual
    msg = f"aligned by {method}" + (f" (ECC corr {corr:.3f})" if corr is not None and "ecc" in method else "")
    if method == "identity":
        msg = "already aligned (no warp explained the query better)"
    if not ok:
        msg = (f"alignment failed: best residual {res:.3f} (> {max_residual}) by {method}; "
               + "; ".join(notes or ["the frames may not show the same scene"]))
    return Alignment(ok, method, H, warped, valid, n_m, n_in, n_in / max(n_m, 1), corr, res, before, msg, notes)
