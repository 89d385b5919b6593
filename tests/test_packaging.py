"""The wheel holds the package, its migrations and its data files, and nothing else (no demo output)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_the_package_and_nothing_else(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "oddeye", src / "oddeye", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    # what `make demo` leaves beside the package: model folders, results, a store
    for folder in ("oddeye-demo/images/model", "oddeye-demo/video/result", "oddeye-results/run"):
        (src / folder).mkdir(parents=True)
        (src / folder / "oddeye_model.json").write_text("{}")
        (src / folder / "__init__.py").write_text("")
    (src / "oddeye-demo" / "store.db").write_bytes(b"SQLite format 3\0")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("oddeye-*.whl"))
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    package = {p.relative_to(src).as_posix() for p in (src / "oddeye").rglob("*") if p.is_file()}
    assert names == package, (sorted(names - package)[:10], sorted(package - names)[:10])
    assert "oddeye/store/migrations/script.py.mako" in names
    assert any(n.startswith("oddeye/store/migrations/versions/0001") for n in names)
