"""Video commands: `fit video-prediction`, `score video`, `eval video`, `bench decode`.

Each command is a module-level function (the demo calls the same ones): check the inputs, call the head, write
through `oddeye.store.writer.write_result`. `register` only wires them.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from oddeye.core.auto import DEFAULT_MINUTES, record
from oddeye.core.autoopts import Auto, AutoMinutes
from oddeye.core.errors import ConfigError, InputError, ModelError
from oddeye.scale.batch import WorkersOpt, ray_mapper
from oddeye.scale.runtime import RayOpt, check_store
from oddeye.store.writer import Written
from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig

DATASET_HELP = "ucsd-ped2 | avenue | shanghaitech"
# command-line option -> the PredictionConfig setting it sets
OPTIONS = {"size": "model.size", "past": "model.past", "minutes": "train.minutes", "max_steps": "train.max_steps",
           "batch_size": "train.batch_size", "seed": "train.seed", "score_stride": "score.stride",
           "motion": "score.motion", "perspective": "score.perspective"}


def _training_inputs(frames: list[Path], videos: list[Path]) -> list[Path]:
    """Expand --frames (a frame folder, or a folder of frame folders/videos) and --video into video sources."""
    from oddeye.core.errors import require_dir, require_file
    from oddeye.core.imageio import IMAGE_SUFFIXES
    from oddeye.core.paths import natural_key
    from oddeye.video.datasets import VIDEO_SUFFIXES

    out: list[Path] = []
    for d in frames:
        d = require_dir(d, "--frames folder")
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir()):
            out.append(d)
            continue
        subs = sorted((p for p in d.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)
        if not subs:
            raise InputError(f"no frames in {d}", "point --frames at a folder of frames or of frame folders")
        out += subs
    out += [require_file(v, "--video") for v in videos]
    if not out:
        raise InputError("no training data given", "pass --frames DIR or --video FILE (repeatable)")
    return out


def _scoring_inputs(inp: str) -> list[Any]:
    """A file, a frame folder, a folder of videos/frame folders, or a stream URL/webcam index."""
    from oddeye.core.imageio import IMAGE_SUFFIXES
    from oddeye.core.paths import natural_key
    from oddeye.core.videoio import is_stream
    from oddeye.video.datasets import VIDEO_SUFFIXES

    if inp.isdigit() or is_stream(inp):
        return [int(inp) if inp.isdigit() else inp]
    p = Path(inp).expanduser()
    if not p.exists():
        raise InputError(f"INPUT not found: {p}", "pass a video file, a frame folder, a folder of videos, a URL or "
                                                  "a webcam index")
    if p.is_dir() and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
        subs = sorted((q for q in p.iterdir() if q.is_dir() or q.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)
        if subs:
            return subs
    return [p]


def _refuse_unreadable(sources: list[Any]) -> None:
    """Open every file or folder input once (streams are not probed); the first that fails is an InputError."""
    from oddeye.core.videoio import is_stream, open_video

    for src in sources:
        if is_stream(src):
            continue
        try:
            open_video(src).close()
        except InputError as e:
            raise InputError(e.message, "pass --skip-bad to record unreadable videos as errors and score the rest"
                             if e.hint is None else f"{e.hint}; or pass --skip-bad to score the rest") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    """A JSON file of PredictionConfig settings, or a model folder's oddeye_model.json (its "config")."""
    from oddeye.core.errors import require_file

    try:
        doc = json.loads(require_file(path, "--config").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"--config {path} is not JSON ({e})") from None
    if isinstance(doc, dict) and "head" in doc:
        if doc["head"] != "video-prediction" or not isinstance(doc.get("config"), dict):
            raise InputError(f"--config {path} is the manifest of a '{doc['head']}' model without video-prediction "
                             "settings", "pass the settings of a video-prediction model")
        doc = doc["config"]
    if not isinstance(doc, dict):
        raise InputError(f"--config {path} must hold a JSON object of settings (model, train, score)")
    return doc


def given_settings(path: Path | None = None, **options: Any) -> dict[str, Any]:
    """The PredictionConfig settings a user gave: those of `path` (--config) with the options given (not None, see
    OPTIONS) on top, as a nested dict."""
    doc = _read_config_file(path) if path is not None else {}
    for name, value in options.items():
        if value is not None:
            section, key = OPTIONS[name].split(".")
            doc[section] = {**doc.get(section, {}), key: value}
    return doc


def prediction_config(path: Path | None = None, **options: Any) -> PredictionConfig:
    """Settings from `path` (--config) with the options given (not None, see OPTIONS) on top; a bad value is a
    ConfigError naming the setting and its option."""
    doc = given_settings(path, **options)
    try:
        return PredictionConfig.from_dict(doc)
    except ConfigError as e:
        setting = e.field.split(".", 1)[-1]
        opt = next((n for n, f in OPTIONS.items() if f == setting and options.get(n) is not None), None)
        if opt is None:
            raise
        raise ConfigError(e.field, e.detail, f"set by --{opt.replace('_', '-')}") from None


def fit_video_prediction(
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (checkpoints go there too).")],
    frames: Annotated[Optional[list[Path]], typer.Option(
        "--frames", help="Folder of frames, or of frame folders/videos (repeatable).")] = None,
    video: Annotated[Optional[list[Path]], typer.Option("--video", help="A normal video file (repeatable).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help=(
        "JSON file of settings ({\"model\": {...}, \"train\": {...}, \"score\": {...}}, or a model folder's "
        "oddeye_model.json to reuse its settings); the options below override it."))] = None,
    minutes: Annotated[Optional[float], typer.Option(
        "--minutes", help=f"Wall-clock training budget of this run (default {TrainConfig.minutes:g}).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")] = False,
    size: Annotated[Optional[int], typer.Option(
        "--size", help=f"Working resolution, square gray, a multiple of 8 (default {PredictorConfig.size}).")] = None,
    past: Annotated[Optional[int], typer.Option(
        "--past", help=f"Past frames used to predict the next one (default {PredictorConfig.past}).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help=f"Clips per step (default {TrainConfig.batch_size}).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help=f"(default {TrainConfig.seed})")] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu or cuda (default: cuda when present).")] = None,
    score_stride: Annotated[Optional[int], typer.Option("--score-stride", help=(
        f"Score frame t by predicting it from t-k, t-2k, ... (k = this, default {ScoreConfig.stride}). 2 suits "
        "25 fps footage at 64 px, where people move under a pixel a frame; 1 for slow frame rates or fast scenes. "
        "The threshold is calibrated with it."))] = None,
    motion: Annotated[Optional[float], typer.Option("--motion", help=(
        f"Score the prediction error relative to how much the scene changed: -PSNR + this (default "
        f"{ScoreConfig.motion:g}) x the PSNR of copying frame t-3k, so busy normal frames do not outrank an odd one "
        "(0: plain -PSNR, where how much moves is itself the anomaly)."))] = None,
    perspective: Annotated[Optional[float], typer.Option("--perspective", help=(
        "For cameras looking along the ground (far objects small, high in the frame): the top row of the "
        "prediction error counts this many times the bottom row, falling linearly (1, the default: off; Ped2: 32 "
        "with --motion 0.5)."))] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> Path:
    """Train the frame-prediction GAN on normal footage; the threshold comes from held-out normal clips.

    With --auto the score settings (perspective, motion weight, smoothing) are chosen on held-out normal clips and
    synthetic anomalies: the generator trains once (--minutes) on the other clips, each candidate only rescores.
    Example: oddeye fit video-prediction --frames ../shared/data/ucsd_ped2/training/frames --out ped2-model --minutes 30
    """
    from oddeye.core.config import set_threads
    from oddeye.core.head import RunContext
    from oddeye.video.prediction.head import PredictionHead

    set_threads()  # all cores, or $ODDEYE_THREADS
    options = dict(minutes=minutes, size=size, past=past, max_steps=max_steps, batch_size=batch_size, seed=seed,
                   score_stride=score_stride, motion=motion, perspective=perspective)
    cfg = prediction_config(config, **options)
    if auto and resume:
        raise InputError("--auto with --resume: the search trains from scratch on part of the clips",
                         "leave one of them out")
    sources = _training_inputs(frames or [], video or [])
    if auto:
        from oddeye.video.auto import search_prediction

        head, found = search_prediction(cfg, sources, given=given_settings(config, **options), minutes=auto_minutes,
                                        device=device, out=out, progress=progress, log=typer.echo)
        for line in found.search.lines():
            typer.echo(line)
        head.save(out)
        record(out, found.search, **found.meta)
    else:
        head = PredictionHead(cfg, device=device)
        typer.echo(f"training on {len(sources)} video(s) for up to {cfg.train.minutes:g} min on {head.device}")
        head.fit(sources, ctx=RunContext(out=out, resume=resume, progress=progress))
        head.save(out)
    typer.echo(head.describe())
    info = head.train_info
    typer.echo(f"steps {info['steps']}, {info['train_minutes']:.1f} training minutes; "
               f"validation clips: {', '.join(info['val_videos'])}")
    typer.echo(f"model written to {out}")
    return out


def score_video(
    model_dir: Annotated[Path, typer.Argument(
        help="Folder written by `oddeye fit video-prediction` or `oddeye fit video-rules`.")],
    inp: Annotated[str, typer.Argument(
        metavar="INPUT", help="Video file, frame folder, folder of videos, URL or webcam index.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for result, timelines, store.")] = Path(
        "oddeye-results/video"),
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Review store (SQLite path or URL); default <out>/store.db.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help=(
        "Record an unreadable or too short video as an error in the result and score the rest "
        "(default: refuse before scoring anything)."))] = False,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> Written:
    """Score videos frame by frame: per-frame scores, events above the model's threshold, timeline PNGs.

    With --ray, each video is a Ray task (one run in the store, the same result).
    Example: oddeye score video ped2-model ../shared/data/ucsd_ped2/testing/frames/01 --out results/
    """
    from oddeye.core.config import set_threads
    from oddeye.core.head import HEADS, RunContext, load_head, read_manifest, score_command
    from oddeye.store.writer import write_result

    found = read_manifest(model_dir)["head"]
    if HEADS.get(found, ("",))[0] != "video":
        raise ModelError(f"{model_dir} holds a '{found}' model, not a video model",
                         f"score it with `{score_command(found)}`, or fit one with `oddeye fit video-prediction`")
    if ray is not None:
        check_store(db, ray)
    sources = _scoring_inputs(inp)
    if not skip_bad:
        _refuse_unreadable(sources)
    ctx = RunContext(out=out, skip_bad=skip_bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ray is None:
            set_threads()
            head = load_head(model_dir)
            if callable(getattr(head, "describe", None)):
                typer.echo(head.describe())
            result = head.score(sources, ctx=ctx)
        else:
            from oddeye.scale.batch import score_on_ray

            result = score_on_ray(model_dir, sources, ctx, address=ray, db=db, workers=workers,
                                  desc="score videos", unit="video")
    for w in caught:
        if "truncated" in str(w.message):
            typer.echo(f"warning: {w.message}", err=True)
    for s in result.errors():
        typer.echo(f"skipped {s.meta.get('path', s.sample_id)}: {s.meta['error']}", err=True)
    thr = f"threshold {result.threshold:.3g}" if result.threshold is not None else result.meta.get("events_from", "")
    typer.echo(f"{thr}; {len(result.events)} event(s)")
    for e in result.events:
        when = f"{e.start:.2f}-{e.end:.2f} s" if e.start is not None else ""
        typer.echo(f"  {e.sample_id}: frames {e.start_frame}-{e.end_frame} {when} score {e.score:.2f} {e.reason}")
    written = write_result(result, out, kind="video", db=db, model=model_dir, data=inp)
    for line in written.lines:
        typer.echo(line)
    return written


def eval_video(
    root: Annotated[Path, typer.Option("--root", help="Data set folder in its public layout.")],
    dataset: Annotated[str, typer.Option("--dataset", help=DATASET_HELP)] = "ucsd-ped2",
    head: Annotated[str, typer.Option("--head", help="prediction | rules")] = "prediction",
    shots: Annotated[Optional[int], typer.Option(
        "--shots", help="rules: normal frames used for rule induction.")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", help=(
        f"prediction: training budget when no --model is given (default {TrainConfig.minutes:g})."))] = None,
    model: Annotated[Optional[Path], typer.Option(
        "--model", help="prediction: evaluate this model folder, no training.")] = None,
    perspective: Annotated[Optional[float], typer.Option("--perspective", help=(
        "prediction, when training: top-row / bottom-row weight of the prediction error, as `oddeye fit "
        "video-prediction --perspective` (1, the default: off; Ped2: 32 with --motion 0.5)."))] = None,
    motion: Annotated[Optional[float], typer.Option("--motion", help=(
        f"prediction, when training: weight of the motion term, as `oddeye fit video-prediction --motion` (default "
        f"{ScoreConfig.motion:g})."))] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for model, result, plots.")] = Path(
        "oddeye-results/eval-video"),
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the JSON line to this file.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Review store; default <out>/store.db.")] = None,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> dict[str, Any]:
    """Evaluate a video head on a public data set: frame AUROC (micro, macro), pixel AUROC, speed.

    Prints a table, then one JSON line (last line of stdout). With --ray, each test video is scored as a Ray task
    (training stays in this process). With --auto the settings are searched on the TRAINING videos only (held-out
    normal clips + synthetic anomalies), then the chosen ones are evaluated; the JSON line gets "auto" (them),
    "auto_val_auroc" and "auto_s".
    Example: oddeye eval video --dataset ucsd-ped2 --root ../shared/data/ucsd_ped2 --head prediction --minutes 30
    """
    from oddeye.core.config import set_threads
    from oddeye.core.report import eval_line, print_eval
    from oddeye.store.writer import write_result
    from oddeye.video.datasets import load_video_dataset

    if head not in ("prediction", "rules"):
        raise InputError(f"--head must be prediction or rules, got {head!r}")
    training = {"minutes": minutes, "perspective": perspective, "motion": motion}
    given = [f"--{k}" for k, v in training.items() if v is not None]
    if model is not None and given:
        raise InputError(f"{', '.join(given)}: only when training (a --model keeps the settings it was fitted with)",
                         f"refit with `oddeye fit video-prediction {given[0]} ...`, or leave {given[0]} out")
    if auto and (model is not None or shots is not None):
        raise InputError(f"--auto with {'--model' if model is not None else '--shots'}: the search fits on the "
                         "whole training clips", "leave one of them out")
    cfg = prediction_config(minutes=minutes, perspective=perspective, motion=motion) if head == "prediction" else None
    if ray is not None:
        check_store(db, ray)
    mapper = map if ray is None else ray_mapper(ray, workers, desc="score test videos", unit="video")
    set_threads()
    t0 = time.perf_counter()
    ds = load_video_dataset(dataset, root)
    out.mkdir(parents=True, exist_ok=True)
    found = None
    if head == "rules":
        from oddeye.core.types import Result
        from oddeye.video.rules.config import RulesConfig
        from oddeye.video.rules.evaluate import evaluate_rules
        from oddeye.video.rules.head import RulesHead

        rules_head = None
        if auto:
            from oddeye.video.auto import search_rules

            found = search_rules(RulesConfig(), [v.source for v in ds.train], minutes=auto_minutes, log=typer.echo)
            rules_head = RulesHead(found.config)
        metrics = evaluate_rules(ds, shots, out, head=rules_head, mapper=mapper)
        result = Result.load(out)
    else:
        from oddeye.video.prediction.evaluate import evaluate_prediction, labelled_result

        if auto:
            from oddeye.video.auto import search_prediction

            fitted, found = search_prediction(cfg, [v.source for v in ds.train], given=given_settings(
                minutes=minutes, perspective=perspective, motion=motion), minutes=auto_minutes, out=out / "model",
                log=typer.echo)
            model = fitted.save(out / "model")
        metrics, fitted, series = evaluate_prediction(ds, out, cfg, model_dir=model, mapper=mapper)
        result = labelled_result(fitted, ds, series, metrics)
    if found is not None:
        for line in found.search.lines():
            typer.echo(line)
        record(out / "model", found.search, **found.meta)
        result.meta["auto"] = found.search.to_dict()
    written = write_result(result, out, kind="video", db=db, model=model or out / "model", data=root)
    for line in written.lines:
        typer.echo(line, err=True)
    doc = eval_line(metrics, ds.name, ds.n_test_frames, time.perf_counter() - t0, head=head,
                    **(found.line() if found is not None else {}))
    print_eval(doc, title=f"video {head} on {ds.name}", json_path=json_path)
    return doc


def bench_decode(
    frames: Annotated[int, typer.Option("--frames", help="Length of each test video.")] = 300,
    n: Annotated[int, typer.Option("--n", help="Frames read in the random-access test.")] = 100,
) -> dict[str, Any]:
    """Frames/s of decord and PyAV on a 240p and a 720p test video (sequential and random access).

    Example: oddeye bench decode
    """
    from oddeye.video.bench import run_decode_bench

    doc = run_decode_bench(frames, n, log=typer.echo)
    typer.echo(json.dumps(doc))
    return doc


def register(cli: Any) -> None:
    """Add the video commands to the oddeye CLI groups."""
    cli.fit.command("video-prediction")(fit_video_prediction)
    cli.score.command("video")(score_video)
    cli.eval.command("video")(eval_video)
    cli.bench.command("decode")(bench_decode)
