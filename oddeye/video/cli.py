"""Video commands: `fit video-prediction`, `score video`, `eval video`, `bench decode`."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from oddeye.core.errors import InputError

if TYPE_CHECKING:
    from oddeye.video.prediction.score import ScoreConfig

DATASET_HELP = "ucsd-ped2 | avenue | shanghaitech"


def _training_inputs(frames: list[Path], videos: list[Path]) -> list[Path]:
    """Expand --frames (a frame folder, or a folder of frame folders/videos) and --video into video sources."""
    from oddeye.core.errors import require_dir, require_file
    from oddeye.core.imageio import IMAGE_SUFFIXES
    from oddeye.video.datasets import VIDEO_SUFFIXES
    from oddeye.core.paths import natural_key

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
    from oddeye.video.datasets import VIDEO_SUFFIXES
    from oddeye.core.videoio import is_stream

    if inp.isdigit() or is_stream(inp):
        return [int(inp) if inp.isdigit() else inp]
    p = Path(inp).expanduser()
    if p.is_dir() and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
        subs = sorted((q for q in p.iterdir() if q.is_dir() or q.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)
        if subs:
            return subs
    return [p]


def _load_video_head(model_dir: Path) -> Any:
    """Load the head named in the model folder's manifest (video-prediction or video-rules)."""
    from oddeye.core.errors import ModelError
    from oddeye.core.head import read_manifest

    head = read_manifest(model_dir)["head"]
    if head == "video-prediction":
        from oddeye.video.prediction.head import PredictionHead

        return PredictionHead.load(model_dir)
    if head == "video-rules":
        from oddeye.video.rules import RulesHead

        return RulesHead.load(model_dir)
    raise ModelError(f"{model_dir} holds a '{head}' model, not a video model",
                     "use `oddeye score <kind>` for that model, or fit video-prediction / video-rules")


def write_outputs(result: Any, out: Path, db: str | None, model: str, data: str) -> list[str]:
    """Save the Result, one timeline PNG per video, and the run in the store; return lines for the user."""
    from oddeye.core.viz import plot_timeline
    from oddeye.store.api import save_result

    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in result.scores:
        if s.frame_scores is None:
            continue
        evs = [e for e in result.events if e.sample_id == s.sample_id]
        png = plot_timeline(out / f"timeline_{Path(s.sample_id).name}.png", s.frame_scores, result.threshold,
                            times=s.frame_times, events=evs, title=f"{s.sample_id} ({result.head})")
        s.artefacts["timeline"] = str(png)
        lines.append(f"{s.sample_id}: max score {s.score:.2f}, {len(evs)} event(s); timeline {png}")
        if s.reason:
            lines.append(f"  {s.reason}")
    path = result.save(out)
    lines.append(f"result: {path}")
    run_id = save_result(db or str(out / "store.db"), result, kind="video", model=model, data=data)
    lines.append(f"review store: {db or out / 'store.db'} (run {run_id})")
    return lines


def register(cli: Any) -> None:
    """Add the video commands to the oddeye CLI groups."""

    @cli.fit.command("video-prediction")
    def fit_prediction(
        frames: list[Path] = typer.Option([], "--frames", help="Folder of frames, or of frame folders/videos (repeatable)."),
        video: list[Path] = typer.Option([], "--video", help="A normal video file (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Model folder to write (checkpoints go there too)."),
        minutes: float = typer.Option(30.0, "--minutes", help="Wall-clock training budget of this run."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
        size: int = typer.Option(64, "--size", help="Working resolution (square, gray)."),
        past: int = typer.Option(4, "--past", help="Past frames used to predict the next one."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps."),
        batch_size: int = typer.Option(16, "--batch-size"),
        seed: int = typer.Option(0, "--seed"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
        score_stride: int = typer.Option(2, "--score-stride", help=(
            "Score frame t by predicting it from t-k, t-2k, ... (k = this). 2 suits 25 fps footage at 64 px, where "
            "people move under a pixel a frame; 1 for slow frame rates or fast scenes. The threshold is "
            "calibrated with it.")),
        motion: float = typer.Option(0.6, "--motion", help=(
            "Score the prediction error relative to how much the scene changed: -PSNR + this x the PSNR of "
            "copying frame t-3k, so busy normal frames do not outrank an odd one (0: plain -PSNR, where how much "
            "moves is itself the anomaly).")),
        perspective: float = typer.Option(1.0, "--perspective", help=(
            "For cameras looking along the ground (far objects small, high in the frame): the top row of the "
            "prediction error counts this many times the bottom row, falling linearly (1: off; Ped2: 32 with "
            "--motion 0.5).")),
    ) -> None:
        """Train the frame-prediction GAN on normal footage; the threshold comes from held-out normal clips.

        Example: oddeye fit video-prediction --frames ../shared/data/ucsd_ped2/training/frames --out ped2-model --minutes 30
        """
        from oddeye.core.errors import require_positive
        from oddeye.video.prediction.head import PredictionHead
        from oddeye.video.prediction.model import PredictorConfig
        from oddeye.video.prediction.score import ScoreConfig
        from oddeye.video.prediction.train import TrainConfig

        from oddeye.core.config import set_threads

        set_threads()  # all cores, or $ODDEYE_THREADS
        require_positive(minutes, "--minutes")
        if size % 8 or size < 16:
            raise InputError(f"--size must be a multiple of 8 (>= 16), got {size}")
        if past < 2:
            raise InputError(f"--past must be >= 2, got {past}")
        if score_stride < 1:
            raise InputError(f"--score-stride must be >= 1, got {score_stride}")
        if motion < 0:
            raise InputError(f"--motion must be >= 0, got {motion}")
        if perspective < 1:
            raise InputError(f"--perspective must be >= 1 (1: off), got {perspective}")
        sources = _training_inputs(frames, video)
        head = PredictionHead(PredictorConfig(size=size, past=past),
                              TrainConfig(minutes=minutes, max_steps=max_steps, batch_size=batch_size, seed=seed),
                              score_cfg=ScoreConfig(stride=score_stride, motion=motion, perspective=perspective),
                              device=device)
        typer.echo(f"training on {len(sources)} video(s) for up to {minutes:g} min on {head.device}")
        head.fit(sources, out=out, resume=resume)
        typer.echo(head.describe())
        info = head.train_info
        typer.echo(f"steps {info['steps']}, {info['train_minutes']:.1f} training minutes; "
                   f"validation clips: {', '.join(info['val_videos'])}")
        typer.echo(f"model written to {out}")

    @cli.score.command("video")
    def score_video(
        model_dir: Path = typer.Argument(..., help="Folder written by `oddeye fit video-prediction` or `video-rules`."),
        inp: str = typer.Argument(..., metavar="INPUT", help="Video file, frame folder, folder of videos, URL or webcam index."),
        out: Path = typer.Option(Path("oddeye-results/video"), "--out", help="Folder for result, timelines, store."),
        db: Optional[str] = typer.Option(None, "--db", help="Review store (SQLite path or URL); default <out>/store.db."),
    ) -> None:
        """Score videos frame by frame: per-frame scores, events above the model's threshold, timeline PNGs.

        Example: oddeye score video ped2-model ../shared/data/ucsd_ped2/testing/frames/01 --out results/
        """
        from oddeye.core.config import set_threads

        set_threads()
        head = _load_video_head(model_dir)
        if hasattr(head, "describe"):
            typer.echo(head.describe())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = head.score(_scoring_inputs(inp))
        for w in caught:
            if "truncated" in str(w.message):
                typer.echo(f"warning: {w.message}", err=True)
        thr = f"threshold {result.threshold:.3g}" if result.threshold is not None else result.meta.get("events_from", "")
        typer.echo(f"{thr}; {len(result.events)} event(s)")
        for e in result.events:
            when = f"{e.start:.2f}-{e.end:.2f} s" if e.start is not None else ""
            typer.echo(f"  {e.sample_id}: frames {e.start_frame}-{e.end_frame} {when} score {e.score:.2f} {e.reason}")
        for line in write_outputs(result, out, db, str(model_dir), inp):
            typer.echo(line)

    @cli.eval.command("video")
    def eval_video(
        dataset: str = typer.Option("ucsd-ped2", "--dataset", help=DATASET_HELP),
        root: Path = typer.Option(..., "--root", help="Data set folder in its public layout."),
        head: str = typer.Option("prediction", "--head", help="prediction | rules"),
        shots: Optional[int] = typer.Option(None, "--shots", help="rules: normal frames used for rule induction."),
        minutes: float = typer.Option(30.0, "--minutes", help="prediction: training budget when no --model is given."),
        model: Optional[Path] = typer.Option(None, "--model", help="prediction: evaluate this model folder, no training."),
        perspective: float = typer.Option(1.0, "--perspective", help=(
            "prediction, when training: top-row / bottom-row weight of the prediction error, as `fit video-prediction "
            "--perspective` (1: off; Ped2: 32 with --motion 0.5). A --model keeps the setting it was fitted with.")),
        motion: Optional[float] = typer.Option(None, "--motion", help=(
            "prediction, when training: weight of the motion term, as `fit video-prediction --motion` (default "
            "0.6). A --model keeps the setting it was fitted with.")),
        out: Path = typer.Option(Path("oddeye-results/eval-video"), "--out", help="Folder for model, result, plots."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON line to this file."),
        db: Optional[str] = typer.Option(None, "--db", help="Review store; default <out>/store.db."),
    ) -> None:
        """Evaluate a video head on a public data set: frame AUROC (micro, macro), pixel AUROC, speed.

        Prints a table, then one JSON line (last line of stdout).
        Example: oddeye eval video --dataset ucsd-ped2 --root ../shared/data/ucsd_ped2 --head prediction --minutes 30
        """
        from oddeye.core.config import set_threads
        from oddeye.core.report import eval_line, print_eval
        from oddeye.video.datasets import load_video_dataset

        set_threads()
        t0 = time.perf_counter()
        ds = load_video_dataset(dataset, root)
        out.mkdir(parents=True, exist_ok=True)
        if head == "rules":
            from oddeye.video.rules.evaluate import evaluate_rules

            metrics = evaluate_rules(ds, shots, out)
            from oddeye.core.types import Result
            from oddeye.store.api import save_result

            run_id = save_result(db or str(out / "store.db"), Result.load(out), kind="video",
                                 model=str(out / "model"), data=str(root))
            typer.echo(f"review store: {db or out / 'store.db'} (run {run_id})", err=True)
            print_eval(eval_line(metrics, ds.name, ds.n_test_frames, time.perf_counter() - t0, head="rules"),
                       title=f"video rules on {ds.name}", json_path=json_path)
            return
        if head != "prediction":
            raise InputError(f"--head must be prediction or rules, got {head!r}")
        if perspective < 1 or (model is not None and perspective != 1):
            raise InputError(f"--perspective {perspective:g}: use a value >= 1, and only when training (a --model "
                             "keeps the setting it was fitted with)", "refit with `oddeye fit video-prediction "
                             "--perspective R`, or leave --perspective out")
        if motion is not None and (motion < 0 or model is not None):
            raise InputError(f"--motion {motion:g}: use a value >= 0, and only when training (a --model keeps the "
                             "setting it was fitted with)", "refit with `oddeye fit video-prediction --motion G`, "
                             "or leave --motion out")
        from oddeye.video.prediction.score import ScoreConfig

        cfg = ScoreConfig(perspective=perspective, **({} if motion is None else {"motion": motion}))
        metrics, h, result = _eval_prediction(ds, out, minutes, model, cfg)
        for line in write_outputs(result, out, db, str(model or out / "model"), str(root)):
            typer.echo(line, err=True)
        print_eval(eval_line(metrics, ds.name, ds.n_test_frames, time.perf_counter() - t0, head="prediction"),
                   title=f"video prediction on {ds.name}", json_path=json_path)

    @cli.bench.command("decode")
    def bench_decode(
        frames: int = typer.Option(300, "--frames", help="Length of each test video."),
        n: int = typer.Option(100, "--n", help="Frames read in the random-access test."),
    ) -> None:
        """Frames/s of decord and PyAV on a 240p and a 720p test video (sequential and random access).

        Example: oddeye bench decode
        """
        from oddeye.video.bench import run_decode_bench

        doc = run_decode_bench(frames, n, log=typer.echo)
        typer.echo(json.dumps(doc))


def _eval_prediction(ds: Any, out: Path, minutes: float, model: Path | None,
                     score_cfg: ScoreConfig | None = None) -> tuple[dict, Any, Any]:
    """Run evaluate_prediction (training with `score_cfg` when no model is given) and build the Result of the
    test videos (labels attached)."""
    from oddeye.video.prediction.evaluate import evaluate_prediction

    metrics, head, series = evaluate_prediction(ds, out, minutes, model_dir=model, score_cfg=score_cfg)
    from oddeye.core.types import Result

    result = Result(head="video-prediction", threshold=head.calibration.threshold, metrics={
        k: v for k, v in metrics.items() if isinstance(v, float)})
    for item, s in zip(ds.test, series):
        s.maps = None
        sc, ev = head.to_score(s, label=int(item.labels.max()) if item.labels is not None else None)
        result.scores.append(sc)
        result.events.extend(ev)
    return metrics, head, result
