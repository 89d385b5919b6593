"""Loaders for every point-cloud format, on small files written here, and every bad input of issue 6."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.errors import DataLayoutError, EmptyDataError, InputError
from oddeye.pointcloud.datasets import load_pc_dataset
from oddeye.pointcloud.io import load_cloud
from oddeye.pointcloud.plyfile import write_ply, write_ply_scores

PTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
LAB = np.array([0, 0, 1, 0, 1])


def _ascii_ply_crlf(path, pts, extra=True, nan_row=False):
    rows = [" ".join(f"{v:g}" for v in p) for p in pts] + (["nan 0 0"] if nan_row else [])
    head = ["ply", "format ascii 1.0", "comment units m", f"element vertex {len(rows)}", "property float x",
            "property float y", "property float z"]
    tail = []
    if extra:
        head += ["element range_grid 4", "property list uchar int vertex_indices"]
        tail = ["1 0", "0", "1 2", "0"]
    path.write_bytes("\r\n".join(head + ["end_header"] + rows + tail).encode() + b"\r\n")
    return path


def _binary_ply(path, pts, labels=None, cut=0):
    props = "property float x\nproperty float y\nproperty float z\n" + ("property int label\n" if labels is not None else "")
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n{props}element face 1\n" \
           "property list uchar int vertex_indices\nend_header\n"
    dt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("label", "<i4")] if labels is not None else [])
    rec = np.zeros(len(pts), dtype=dt)
    rec["x"], rec["y"], rec["z"] = pts.T
    if labels is not None:
        rec["label"] = labels
    body = rec.tobytes() + bytes([3]) + np.array([0, 1, 2], "<i4").tobytes()
    path.write_bytes(head.encode() + (body[:-cut - 13] if cut else body))
    return path


def test_ascii_ply_crlf_with_extra_element_and_nan(tmp_path):
    c = load_cloud(_ascii_ply_crlf(tmp_path / "scan.ply", PTS, nan_row=True))
    assert c.points.shape == (5, 3)
    np.testing.assert_allclose(c.points, PTS)
    assert c.meta["dropped_nonfinite"] == 1 and c.meta["units"] == "m"


def test_binary_ply_with_labels_and_faces(tmp_path):
    c = load_cloud(_binary_ply(tmp_path / "b.ply", PTS, LAB))
    np.testing.assert_allclose(c.points, PTS)
    np.testing.assert_array_equal(c.labels, LAB)


def test_binary_ply_cut_short_names_file(tmp_path):
    p = _binary_ply(tmp_path / "cut.ply", PTS, cut=7)
    with pytest.raises(InputError, match="cut short") as e:
        load_cloud(p)
    assert "cut.ply" in str(e.value)


def test_ascii_ply_short(tmp_path):
    p = tmp_path / "short.ply"
    p.write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
                 "end_header\n0 0 0\n1 1 1\n")
    with pytest.raises(InputError, match="short.ply"):
        load_cloud(p)


def test_pcd_roundtrip(tmp_path):
    import open3d as o3d

    p = tmp_path / "c.pcd"
    o3d.io.write_point_cloud(str(p), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(PTS.astype(np.float64))))
    c = load_cloud(p)
    np.testing.assert_allclose(c.points, PTS, atol=1e-6)


@pytest.mark.parametrize("suffix,sep,header", [(".xyz", " ", False), (".csv", ",", True), (".txt", "\t", False)])
@pytest.mark.parametrize("with_labels", [False, True])
def test_tables(tmp_path, suffix, sep, header, with_labels):
    arr = np.column_stack([PTS, LAB]) if with_labels else PTS
    lines = [sep.join(f"{v:g}" for v in row) for row in arr]
    if header:
        lines.insert(0, sep.join(["x", "y", "z"] + (["label"] if with_labels else [])))
    p = tmp_path / f"t{suffix}"
    p.write_text("\n".join(lines) + "\n")
    c = load_cloud(p)
    np.testing.assert_allclose(c.points, PTS)
    if with_labels:
        np.testing.assert_array_equal(c.labels, LAB)
    else:
        assert c.labels is None


def test_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", PTS)
    np.testing.assert_allclose(load_cloud(tmp_path / "a.npy").points, PTS)
    np.savez(tmp_path / "b.npz", points=PTS, labels=LAB)
    c = load_cloud(tmp_path / "b.npz")
    np.testing.assert_array_equal(c.labels, LAB)


def test_organised_tiff_keeps_grid(tmp_path):
    import tifffile

    grid = np.zeros((4, 5, 3), np.float32)
    grid[1, 2] = [1, 2, 3]
    grid[3, 4] = [4, 5, 6]
    grid[0, 0] = [0.5, 0.5, 0.5]
    tifffile.imwrite(tmp_path / "000.tiff", grid)
    c = load_cloud(tmp_path / "000.tiff")
    assert len(c) == 3 and c.grid_shape == (4, 5)
    np.testing.assert_array_equal(np.sort(c.grid_index), [0, 7, 19])
    assert c.meta["missing_grid_points"] == 17


def test_tiff_not_organised(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "gray.tiff", np.ones((8, 8), np.float32))
    with pytest.raises(InputError, match="gray.tiff.*not an organised xyz"):
        load_cloud(tmp_path / "gray.tiff")


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "empty.xyz").write_text("# nothing\n")
    with pytest.raises(EmptyDataError, match="empty.xyz"):
        load_cloud(tmp_path / "empty.xyz")
    (tmp_path / "one.xyz").write_text("1 2 3\n")
    with pytest.raises(EmptyDataError, match="one.xyz.*one valid point"):
        load_cloud(tmp_path / "one.xyz")
    (tmp_path / "nan.xyz").write_text("nan 1 2\ninf 0 0\nnan nan nan\n")
    with pytest.raises(EmptyDataError, match="nan.xyz.*NaN"):
        load_cloud(tmp_path / "nan.xyz")
    (tmp_path / "zero.ply").write_bytes(b"")
    with pytest.raises(InputError, match="zero.ply"):
        load_cloud(tmp_path / "zero.ply")
    np.save(tmp_path / "p.npy", PTS)
    (tmp_path / "lab.txt").write_text("0\n1\n0\n")
    with pytest.raises(InputError, match="lab.txt.*3 labels"):
        load_cloud(tmp_path / "p.npy", labels=tmp_path / "lab.txt")


def test_write_ply_scores_reads_back(tmp_path):
    s = np.linspace(0, 1, len(PTS))
    p = write_ply_scores(tmp_path / "s.ply", PTS, s)
    c = load_cloud(p)
    np.testing.assert_allclose(c.points, PTS)


def test_write_ply_keeps_points_and_labels_exactly(tmp_path):
    pts = np.random.default_rng(1).random((500, 3)).astype(np.float32)
    labels = (pts[:, 0] > 0.8).astype(np.int64)
    c = load_cloud(write_ply(tmp_path / "c.ply", pts, labels))
    assert np.array_equal(c.points, pts) and np.array_equal(c.labels, labels) and c.meta["format"].startswith("ply-bin")
    assert load_cloud(write_ply(tmp_path / "n.ply", pts)).labels is None
    with pytest.raises(InputError, match="499 labels for 500 points"):
        write_ply(tmp_path / "x.ply", pts, labels[:-1])


def test_real3d_layout(tmp_path):
    cat = tmp_path / "airplane"
    for d in ("train", "test", "gt"):
        (cat / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        np.savetxt(cat / "train" / f"{i}_template.xyz", rng.random((20, 3)))
    (cat / "train" / "0_template.xyz").rename(cat / "train" / "0_template.pcd")
    import open3d as o3d

    def wpcd(path, pts):
        o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)))

    wpcd(cat / "train" / "1_template.pcd", rng.random((20, 3)))
    wpcd(cat / "train" / "0_template.pcd", rng.random((20, 3)))
    bad = rng.random((30, 3))
    wpcd(cat / "test" / "3_bulge.pcd", bad)
    np.savetxt(cat / "gt" / "3_bulge.txt", np.column_stack([bad, (np.arange(30) < 5).astype(int)]))
    wpcd(cat / "test" / "4_good.pcd", rng.random((25, 3)))
    (cat / "train" / "1_template.xyz").unlink()
    cats = load_pc_dataset("real3d-ad", tmp_path)
    assert [c.name for c in cats] == ["airplane"] and len(cats[0].train) == 2
    items = {i.path.stem: i for i in cats[0].test}
    c = items["3_bulge"].load()
    assert items["3_bulge"].label == 1 and c.labels.sum() == 5
    assert items["4_good"].label == 0 and items["4_good"].load().labels.sum() == 0
    np.savetxt(cat / "gt" / "3_bulge.txt", np.column_stack([bad[:10], np.zeros(10)]))
    with pytest.raises(InputError, match="3_bulge.txt"):
        items["3_bulge"].load()
    with pytest.raises(DataLayoutError):
        load_pc_dataset("real3d-ad", tmp_path / "airplane" / "gt")
