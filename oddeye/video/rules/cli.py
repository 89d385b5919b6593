"""Commands: `oddeye fit video-rules` and `oddeye rules show` (scoring is `oddeye score video`).

Each command is a plain function (the demo calls the same ones): it checks every input first, then fits or reads
the model. Options left at None take the RulesConfig default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from oddeye.core.auto import DEFAULT_MINUTES, record
from oddeye.core.autoopts import Auto, AutoMinutes
from oddeye.core.errors import InputError, require_out_dir
from oddeye.core.headconfig import given
from oddeye.video.rules.config import InductionConfig, RulesConfig


def _grid(text: str) -> list[int]:
    """'4x6' -> [4, 6] (the config checks the bounds); anything else is an InputError."""
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--grid must look like 4x6 (rows x columns), got {text!r}") from None
    return [r, c]


def fit_video_rules(
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (rules.yaml, zones.yaml, ...).")],
    frames: Annotated[Optional[list[Path]], typer.Option("--frames", help="Folder of frames, or of frame folders/videos (repeatable).")] = None,
    video: Annotated[Optional[list[Path]], typer.Option("--video", help="A normal video file (repeatable).")] = None,
    shots: Annotated[Optional[int], typer.Option("--shots", help="Induce from K normal frames (default: all frames).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="offline (default) | transformers | http (LLM induction).")] = None,
    llm_model: Annotated[Optional[str], typer.Option("--llm-model", help="transformers: local model folder; http: model name ($ODDEYE_LLM_MODEL).")] = None,
    llm_url: Annotated[Optional[str], typer.Option("--llm-url", help="http: base URL ($ODDEYE_LLM_BASE_URL), e.g. http://localhost:8000/v1")] = None,
    attributes: Annotated[Optional[str], typer.Option("--attributes", help="Object attributes to induce rules for, comma-separated (default: speed,area,height,width).")] = None,
    grid: Annotated[Optional[str], typer.Option("--grid", help="Scene zone grid, rows x columns (default 4x6).")] = None,
    flow: Annotated[Optional[str], typer.Option("--flow", help="Optical flow: farneback (default) | dis (faster) | none.")] = None,
    zone_weight: Annotated[Optional[float], typer.Option("--zone-weight", help="Judgement (0..1] of an object where normal footage has nobody; 1 where nobody ever leaves the path (default 0.1).")] = None,
    captioner: Annotated[Optional[str], typer.Option("--captioner", help="Local VLM folder (BLIP, LLaVA, ...) whose captions the LLM reads too (needs --backend transformers|http).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Where a local LLM / VLM runs (default cpu).")] = None,
    appearance: Annotated[Optional[bool], typer.Option("--appearance/--no-appearance", help=(
        "Also learn what normal objects look like (crops embedded with the backbone, kept in the patch index): "
        "a rule flags an object that looks like none in the normal footage. Off by default (slower: ~4x).")
    )] = None,
    appearance_crop: Annotated[Optional[int], typer.Option("--appearance-crop", help=(
        "Size (px) objects are cropped to before embedding (default 64; 32 is faster)."))] = None,
    appearance_margin: Annotated[Optional[float], typer.Option("--appearance-margin", help=(
        "Margin above the normal distances before an object counts as looking unlike them (default 1.0)."))] = None,
    appearance_every: Annotated[Optional[int], typer.Option("--appearance-every", help=(
        "Embed every n-th frame (and each track's first); tracks keep their last value between (default 1)."))] = None,
    sigma: Annotated[Optional[float], typer.Option("--sigma", help=(
        f"Temporal smoothing of the per-frame judgement, frames (default {RulesConfig.sigma:g}; 0: none)."))] = None,
    soft: Annotated[Optional[float], typer.Option("--soft", help=(
        f"Margin units below a rule's limit where the judgement starts to rise (default {RulesConfig.soft:g}; 0: a "
        "hard step)."))
    ] = None,
    margin_k: Annotated[Optional[float], typer.Option("--margin-k", help=(
        f"Rule margins: this many times (high quantile - median) of the normal values (default "
        f"{InductionConfig.margin_k:g})."))] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> Path:
    """Induce readable rules of normality from normal footage (AnomalyRuler style) and write a model folder.

    Perception finds moving objects (background subtraction + optical flow), tracks them and learns scene
    zones; rules are allowed ranges of speed/size per zone, count per frame and allowed zones, with margins
    from the data. Edit OUT/rules.yaml freely; `oddeye rules show OUT` prints the rules; score with
    `oddeye score video OUT INPUT`.

    Example: oddeye fit video-rules --frames ../shared/data/ucsd_ped2/training/frames --out models/ped2-rules --shots 48
    Settings chosen from the normal clips: oddeye fit video-rules --frames DIR --out models/ped2-rules --auto
    """
    from oddeye.core.head import RunContext
    from oddeye.video.cli import _training_inputs
    from oddeye.video.rules.head import RulesHead

    if shots is not None and shots < 1:
        raise InputError(f"--shots must be >= 1, got {shots}", "leave --shots out to use every normal frame")
    if auto and shots is not None:
        raise InputError("--auto with --shots: the search fits on whole normal clips", "leave one of them out")
    attrs = None if attributes is None else [a.strip() for a in attributes.split(",") if a.strip()]
    settings = given(
        perception=given(flow=flow), induction=given(attributes=attrs, zone_weight=zone_weight, margin_k=margin_k),
        llm=given(backend=backend, model=llm_model, url=llm_url, captioner=captioner),
        appearance=given(enabled=appearance, crop=appearance_crop, margin=appearance_margin, every=appearance_every),
        grid=None if grid is None else _grid(grid), sigma=sigma, soft=soft)
    config = RulesConfig.from_dict(settings)
    if auto and config.llm.backend != "offline":
        raise InputError("--auto with an LLM backend would ask the LLM again for every candidate",
                         "search offline (leave --backend out), then refit with --backend and the chosen settings")
    require_out_dir(out)
    sources = _training_inputs(list(frames or []), list(video or []))
    found = None
    if auto:
        from oddeye.video.auto import search_rules

        found = search_rules(config, sources, given=settings, minutes=auto_minutes, device=device, log=typer.echo)
        for line in found.search.lines():
            typer.echo(line)
        config = found.config
    head = RulesHead(config, device=device).fit(sources, ctx=RunContext(shots=shots, progress=progress))
    model = Path(head.save(out))
    if found is not None:
        record(model, found.search, **found.meta)
    typer.echo(f"{len(head.rules)} rules from {head.fit_info['n_frames']} normal frames -> {model}")
    typer.echo(f"see them with: oddeye rules show {model}; score with: oddeye score video {model} INPUT")
    return model


def show_rules(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `oddeye fit video-rules`.")],
) -> None:
    """Print the rules of a fitted video-rules model, its scene zones and how the rules were made.

    Example: oddeye rules show models/ped2-rules
    """
    import yaml
    from rich.console import Console
    from rich.table import Table

    from oddeye.core.head import read_manifest
    from oddeye.video.rules.modelio import HEAD, RULES_FILE, ZONES_FILE
    from oddeye.video.rules.rules import RuleSet

    read_manifest(model_dir, head=HEAD)
    rules = RuleSet.load(model_dir / RULES_FILE)
    console = Console(highlight=False, width=max(Console().width, 120))
    t = Table(title=f"rules of {model_dir} ({len(rules)})")
    for col in ("id", "rule", "margin", "weight", "support", "source"):
        t.add_column(col, justify="left" if col in ("id", "rule", "source") else "right")
    for r in rules.rules:
        t.add_row(r.id, r.describe(), f"{r.margin:.3g}", f"{r.weight:.2g}", f"{r.support:.2g}", r.source)
    console.print(t)
    zones_file = model_dir / ZONES_FILE
    if zones_file.is_file():
        z = yaml.safe_load(zones_file.read_text())
        zt = Table(title="scene zones (objects seen in normal footage per cell)")
        zt.add_column("row")
        for c in range(int(z["cols"])):
            zt.add_column(f"col {c + 1}")
        for r, (names, counts) in enumerate(zip(z["names"], z["counts"])):
            zt.add_row(str(r + 1), *[f"{n}\n{k}" for n, k in zip(names, counts)])
        console.print(zt)
    meta = rules.meta
    if meta.get("held_out_breach_rate"):
        rates = ", ".join(f"{a} {100 * v:.1f}%" for a, v in meta["held_out_breach_rate"].items())
        console.print(f"held-out normal frames breaking each kind of rule: {rates}")
        console.print(f"kinds of rules kept: {', '.join(meta.get('attributes_kept', []))}")
    fit = meta.get("fit", {})
    if fit:
        console.print(f"induced from {fit.get('n_frames')} normal frames of {fit.get('n_videos')} video(s), "
                      f"backend {meta.get('backend', 'offline')}; edit {model_dir / RULES_FILE} to change them")


def register(cli: Any) -> None:
    """Add `fit video-rules` and the `rules` group (`rules show`)."""
    cli.fit.command("video-rules")(fit_video_rules)
    rules_app = typer.Typer(help="Look at the rules of a video-rules model.", no_args_is_help=True)
    rules_app.command("show")(show_rules)
    cli.app.add_typer(rules_app, name="rules")
