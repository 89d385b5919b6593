"""`--ray` on `oddeye score`: on a real local Ray runtime (2 CPUs) every head gives the Result of the plain path;
a worker killed mid-batch is retried; a task that keeps failing becomes error rows; SQLite off one machine is
refused; the CLI writes one run; without --ray, Ray is never imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract_image import CASES as IMAGE_CASES
from contract_patrol import CASES as PATROL_CASES
from contract_patrol import _route
from contract_pointcloud import CASES as POINTCLOUD_CASES
from contract_prediction import CASES as PREDICTION_CASES
from contract_rules import CASES as RULES_CASES
from contract_support import ContractCase, assert_same_result
from oddeye.core import synth
from oddeye.core.errors import InputError
from oddeye.core.head import HEADS, RunContext, load_head, read_manifest
from oddeye.core.types import Result

CASES: list[ContractCase] = [*IMAGE_CASES, *PREDICTION_CASES, *RULES_CASES, *POINTCLOUD_CASES, *PATROL_CASES]
IMAGE_BATCH = 2  # the image models score 2 images per extraction batch: 6 test images are 3 tasks
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray runtime with 2 CPUs for the module; workers can import this test module (its samples)."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_DEDUP_LOGS": "0"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each head fitted once on its synthetic data and saved, with its test inputs (cached per head)."""
    cache: dict[str, tuple[Path, list[Any], Path]] = {}

    def get(case: ContractCase) -> tuple[Path, list[Any], Path]:
        if case.head not in cache:
            root = tmp_path_factory.mktemp(case.head)
            head = case.make().fit(case.train(root / "data"), ctx=case.ctx(root / "fit"))
            if HEADS[case.head][0] == "image":
                head.config = head.config.replace(batch_size=IMAGE_BATCH)
            samples = case.test(root / "data")
            if case.head == "patrol":  # a second query run, so that the batch fans out
                samples.append(synth.write_frames(_route().query, root / "data" / "query_b"))
            cache[case.head] = (Path(head.save(root / "model")), samples, root)
        return cache[case.head]

    return get


def _image_items(samples: list[Any]) -> list[Any]:
    """Image inputs as the CLI hands them over (ids made unique over the whole batch)."""
    from oddeye.image.common import as_items

    return as_items(samples)


def _ray(model: Path, samples: list[Any], ctx: RunContext, **kw: Any):
    from oddeye.scale.batch import run_on_ray

    return run_on_ray(model, samples, ctx, address=None, db=None, workers=2, **kw)


def _same_run_level(a: Result, b: Result) -> None:
    """The run-level parts of two Results agree (meta, metrics), besides what assert_same_result checks."""
    assert a.metrics == b.metrics
    assert json.dumps(a.meta, sort_keys=True, default=str) == json.dumps(b.meta, sort_keys=True, default=str)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_ray_result_is_the_plain_result(case: ContractCase, fitted, ray_local, tmp_path):
    model, samples, root = fitted(case)
    per_task = 1
    if HEADS[case.head][0] == "image":
        from oddeye.image.cli import images_per_task

        samples = _image_items(samples)
        per_task = images_per_task(read_manifest(model), len(samples))
    plain = load_head(model).score(samples, ctx=case.ctx(tmp_path / "plain"))
    batch = _ray(model, samples, case.ctx(tmp_path / "ray"), per_task=per_task)
    # zero-shot scores its images against each other: the whole batch is one task
    assert batch.tasks == (1 if case.head == "zero-shot" else len(samples) // per_task) and batch.failed == 0
    assert plain.scores and not plain.errors()
    assert_same_result(plain, batch.result)
    _same_run_level(plain, batch.result)
    assert batch.loads <= len(batch.pids)  # each worker process loaded the model at most once


def test_skip_bad_inputs_keep_their_place(fitted, ray_local, tmp_path):
    model, samples, _ = fitted(POINTCLOUD_CASES[0])
    bad = tmp_path / "broken.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 5\nend_header\n1 2\n")
    inputs = [samples[0], bad, *samples[1:]]
    ctx = RunContext(out=tmp_path / "out", skip_bad=True, progress=False)
    plain = load_head(model).score(inputs, ctx=ctx)
    ray = _ray(model, inputs, ctx).result
    assert [s.sample_id for s in ray.errors()] == ["broken"]
    assert_same_result(plain, ray)
    assert ray.scores[1].meta["error"] == plain.scores[1].meta["error"]


class Tile:
    """A synthetic image as a sample; reading its pixels may kill the worker once or fail every time."""

    def __init__(self, image: np.ndarray, label: int, id: str, marker: Path | None = None, fail: bool = False):
        self._image, self.label, self.id, self.marker, self.fail = image, label, id, marker, fail
        self.driver = os.getpid()  # never kill the test process itself: that would end the whole suite silently

    @property
    def image(self) -> np.ndarray:
        if self.fail:
            if self.marker is not None:
                with self.marker.open("a") as f:
                    f.write(f"{os.getpid()}\n")
            raise RuntimeError(f"{self.id}: this sample always fails")
        if self.marker is not None and not self.marker.exists():  # the first attempt: the worker dies
            assert os.getpid() != self.driver, f"{self.id}: pixels read in the test process, not in a Ray worker"
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self._image


def _tiles(**special: dict[str, Any]) -> tuple[list[Tile], list[Tile]]:
    """(8 plain tiles, the same tiles where those named in `special` get its settings)."""
    imgs = synth.make_image_set(seed=2, n_normal=4, n_defect=4)
    plain = [Tile(s.image, s.label, f"tile{i}") for i, s in enumerate(imgs)]
    odd = [Tile(s.image, s.label, f"tile{i}", **special.get(f"tile{i}", {})) for i, s in enumerate(imgs)]
    return plain, odd


def test_a_killed_worker_is_retried_and_the_result_is_the_same(fitted, ray_local, tmp_path):
    model, _, _ = fitted(IMAGE_CASES[0])
    marker = tmp_path / "killed"
    plain_tiles, tiles = _tiles(tile3={"marker": marker})
    ctx = RunContext(progress=False)
    plain = load_head(model).score(plain_tiles, ctx=ctx)
    batch = _ray(model, tiles, ctx, per_task=IMAGE_BATCH)
    killed = int(marker.read_text())
    assert batch.failed == 0 and not batch.result.errors()
    assert killed not in batch.pids  # the task that died came back from another worker process
    assert_same_result(plain, batch.result)


def test_task_size_groups_whole_units_and_keeps_two_tasks_per_worker():
    from oddeye.scale.batch import task_size

    assert task_size(128, 16, 4, 1) == 64  # 8 batches, one worker: two tasks of 4 batches
    assert task_size(128, 16, 4, 2) == 32  # two workers: two tasks each
    assert task_size(128, 16, 4, 8) == 16  # more workers than pairs of batches: one batch per task
    assert task_size(1000, 16, 4, 2) == 64  # at most `group` batches
    assert task_size(12, 1, 1, 2) == 1  # videos: one per task
    assert task_size(5, 16, 4, 1) == 16  # fewer inputs than a batch: one task


def test_grouped_tasks_and_set_threads_give_the_plain_result(fitted, ray_local):
    model, _, _ = fitted(IMAGE_CASES[0])
    tiles, _ = _tiles()
    ctx = RunContext(progress=False)
    plain = load_head(model).score(tiles, ctx=ctx)
    from oddeye.scale.batch import run_on_ray

    batch = run_on_ray(model, tiles, ctx, address=None, db=None, workers=1, per_task=IMAGE_BATCH, group=4,
                       threads=1)
    assert (batch.tasks, batch.workers, batch.threads) == (2, 1, 1)  # 4 batches of 2: two tasks of 2 batches
    assert_same_result(plain, batch.result)


def test_a_task_that_keeps_failing_becomes_error_rows(fitted, ray_local, tmp_path):
    model, _, _ = fitted(IMAGE_CASES[0])
    attempts = tmp_path / "attempts"
    plain_tiles, tiles = _tiles(tile5={"marker": attempts, "fail": True})
    ctx = RunContext(progress=False)
    plain = load_head(model).score(plain_tiles, ctx=ctx)
    batch = _ray(model, tiles, ctx, per_task=IMAGE_BATCH)
    assert len(attempts.read_text().split()) == 2  # tried, then retried once
    assert batch.failed == 1
    res = batch.result
    assert [s.sample_id for s in res.errors()] == ["tile4", "tile5"]  # the task of tile 4 and 5
    assert "RuntimeError: tile5: this sample always fails" in res.get("tile5").meta["error"]
    assert [s.sample_id for s in res.scores] == [s.sample_id for s in plain.scores]
    kept = [i for i, s in enumerate(res.scores) if "error" not in s.meta]
    assert kept == [0, 1, 2, 3, 6, 7]
    for i in kept:
        np.testing.assert_array_equal(res.scores[i].maps["anomaly"].values, plain.scores[i].maps["anomaly"].values)
        assert res.scores[i].score == plain.scores[i].score
    assert [e.sample_id for e in res.events] == [e.sample_id for e in plain.events if e.sample_id not in
                                                 ("tile4", "tile5")]


def _points_score(head: Any, path: Path) -> float:
    """The score of one cloud file (a function an evaluation maps over its items)."""
    from oddeye.pointcloud.io import load_cloud

    return head.score_points(load_cloud(path).points).score


def _fails_on_the_second(x: int) -> int:
    if x == 2:
        raise RuntimeError("item 2 cannot be done")
    return x * x


def test_map_on_ray_is_map_with_the_function_sent_once(fitted, ray_local):
    from oddeye.scale.batch import map_on_ray, ray_mapper

    model, samples, _ = fitted(POINTCLOUD_CASES[0])
    head = load_head(model)
    fn = partial(_points_score, head)  # holds the fitted head: it goes through the object store once
    assert ray_mapper(None, 2)(fn, samples) == list(map(fn, samples))
    with pytest.raises(RuntimeError, match="item 2 cannot be done"):
        map_on_ray(_fails_on_the_second, [1, 2, 3], address=None, progress=False)


def test_a_user_error_in_a_task_stops_the_run_without_retry(fitted, ray_local, tmp_path):
    model, samples, _ = fitted(POINTCLOUD_CASES[0])
    bad = tmp_path / "broken.ply"
    bad.write_text("not a cloud")
    with pytest.raises(InputError, match="broken.ply"):
        _ray(model, [*samples, bad], RunContext(progress=False))


def test_sqlite_is_refused_off_one_machine(fitted, tmp_path):
    from oddeye.cli import main
    from oddeye.scale.batch import score_on_ray

    model, samples, _ = fitted(IMAGE_CASES[0])
    with pytest.raises(InputError, match="--db"):
        score_on_ray(model, samples, address="auto", db=str(tmp_path / "store.db"))
    proc = subprocess.run([sys.executable, "-m", "oddeye", "score", "image", str(model), str(samples[0]),
                           "--ray", "auto", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--db" in proc.stderr and "SQLite" in proc.stderr and "postgresql://" in proc.stderr
    assert not (tmp_path / "s.db").exists()
    assert main(["score", "image", str(model), str(samples[0]), "--ray", "auto", "--out", str(tmp_path / "o")]) == 2


def test_cli_with_ray_writes_one_run(fitted, ray_local, tmp_path, db):
    from oddeye.cli import main
    from oddeye.store.api import open_store

    model, samples, _ = fitted(IMAGE_CASES[0])
    folder = samples[0].parent
    assert main(["score", "image", str(model), str(folder), "--out", str(tmp_path / "plain"),
                 "--db", str(tmp_path / "plain.db")]) == 0
    assert main(["score", "image", str(model), str(folder), "--ray", "--db", db, "--out", str(tmp_path / "ray")]) == 0
    plain, ray = Result.load(tmp_path / "plain"), Result.load(tmp_path / "ray")
    assert_same_result(plain, ray)
    with open_store(db) as store:
        runs = store.runs()
        assert len(runs) == 1
        assert runs[0]["n_samples"] == len(samples) == 6


COMMANDS = {  # head -> the `oddeye score` arguments after MODEL for its test inputs
    "video-rules": lambda inputs: ["video", str(inputs[0].parent)],
    "pointcloud": lambda inputs: ["pointcloud", *map(str, inputs)],
    "patrol": lambda inputs: ["patrol", *[a for q in inputs for a in ("--query", str(q))]],
}


@pytest.mark.parametrize("case", [c for c in CASES if c.head in COMMANDS], ids=str)
def test_every_score_command_takes_ray(case: ContractCase, fitted, ray_local, tmp_path):
    from oddeye.cli import main
    from oddeye.store.api import open_store

    model, samples, _ = fitted(case)
    kind, *args = COMMANDS[case.head](samples)
    for how, extra in (("plain", []), ("ray", ["--ray", "--workers", "2"])):
        argv = ["score", kind, str(model), *args, "--out", str(tmp_path / how), "--db", str(tmp_path / f"{how}.db")]
        assert main(argv + extra) == 0, how
    assert_same_result(Result.load(tmp_path / "plain"), Result.load(tmp_path / "ray"))
    runs = {}
    for how in ("plain", "ray"):
        with open_store(str(tmp_path / f"{how}.db")) as store:
            runs[how] = [(r["n_samples"], r["n_events"]) for r in store.runs()]
    assert len(runs["ray"]) == 1 and runs["ray"] == runs["plain"]


def test_without_ray_nothing_of_ray_is_imported(fitted, tmp_path):
    model, samples, _ = fitted(IMAGE_CASES[0])
    code = ("import sys; from oddeye.cli import main; "
            f"rc = main(['score', 'image', {str(model)!r}, {str(samples[0])!r}, '--out', {str(tmp_path / 'o')!r}]); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]

