"""Commands: `oddeye fit video-rules` and `oddeye rules show`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from oddeye.core.errors import InputError


def _grid(text: str) -> tuple[int, int]:
    """'4x6' -> (4, 6); anything else is an InputError."""
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--grid must look like 4x6 (rows x columns), got {text!r}") from None
    if not (1 <= r <= 12 and 1 <= c <= 16):
        raise InputError(f"--grid must have 1..12 rows and 1..16 columns, got {text!r}")
    return r, c


def show_rules(model_dir: Path) -> None:
    """Print the rules, zones and how they were made, readably (rich tables)."""
    import yaml
    from rich.console import Console
    from rich.table import Table

    from oddeye.core.head import read_manifest
    from oddeye.video.rules.rules import RuleSet

    read_manifest(model_dir, head="video-rules")
    rules = RuleSet.load(model_dir / "rules.yaml")
    console = Console(highlight=False, width=max(Console().width, 120))
    t = Table(title=f"rules of {model_dir} ({len(rules)})")
    for col in ("id", "rule", "margin", "weight", "support", "source"):
        t.add_column(col, justify="left" if col in ("id", "rule", "source") else "right")
    for r in rules.rules:
        t.add_row(r.id, r.describe(), f"{r.margin:.3g}", f"{r.weight:.2g}", f"{r.support:.2g}", r.source)
    console.print(t)
    zones_file = model_dir / "zones.yaml"
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
                      f"backend {meta.get('backend', 'offline')}; edit {model_dir / 'rules.yaml'} to change them")


def register(cli: Any) -> None:
    """Add `fit video-rules` and the `rules` group (`rules show`)."""

    @cli.fit.command("video-rules")
    def fit_rules(
        frames: list[Path] = typer.Option([], "--frames", help="Folder of frames, or of frame folders/videos (repeatable)."),
        video: list[Path] = typer.Option([], "--video", help="A normal video file (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Model folder to write (rules.yaml, zones.yaml, ...)."),
        shots: Optional[int] = typer.Option(None, "--shots", help="Induce from K normal frames (default: all frames)."),
        backend: str = typer.Option("offline", "--backend", help="offline | transformers | http (LLM induction)."),
        llm_model: Optional[str] = typer.Option(None, "--llm-model", help="transformers: local model folder; "
                                                                        "http: model name ($ODDEYE_LLM_MODEL)."),
        llm_url: Optional[str] = typer.Option(None, "--llm-url", help="http: base URL ($ODDEYE_LLM_BASE_URL), "
                                                                    "e.g. http://localhost:8000/v1"),
        attributes: str = typer.Option("speed,area,height,width", "--attributes",
                                       help="Object attributes to induce rules for (comma-separated)."),
        grid: str = typer.Option("4x6", "--grid", help="Scene zone grid, rows x columns."),
        flow: str = typer.Option("farneback", "--flow", help="Optical flow: farneback | dis (faster) | none."),
        captioner: Optional[str] = typer.Option(None, "--captioner", help="Local VLM folder (BLIP, LLaVA, ...) whose "
                                                "captions the LLM reads too (needs --backend transformers|http)."),
    ) -> None:
        """Induce readable rules of normality from normal footage (AnomalyRuler style) and write a model folder.

        Perception finds moving objects (background subtraction + optical flow), tracks them and learns scene
        zones; rules are allowed ranges of speed/size per zone, count per frame and allowed zones, with margins
        from the data. Edit OUT/rules.yaml freely; `oddeye rules show OUT` prints the rules.

        Example: oddeye fit video-rules --frames ../shared/data/ucsd_ped2/training/frames --out models/ped2-rules --shots 48
        """
        from oddeye.video.cli import _training_inputs
        from oddeye.video.rules import RulesHead
        from oddeye.video.rules.induction import InductionParams
        from oddeye.video.rules.llm import make_backend
        from oddeye.video.rules.perception import PerceptionParams

        sources = _training_inputs(frames, video)
        attrs = tuple(a.strip() for a in attributes.split(",") if a.strip())
        ind = InductionParams(attributes=attrs)
        ind.validate()
        llm = make_backend(backend, model=llm_model, url=llm_url)
        vlm = None
        if captioner:
            if llm is None:
                raise InputError("--captioner feeds the LLM backend", "add --backend transformers or --backend http")
            from oddeye.video.rules.captioner import VLMCaptioner

            vlm = VLMCaptioner(captioner)
        head = RulesHead(PerceptionParams(flow=flow), ind, grid=_grid(grid), llm=llm, captioner=vlm)
        head.fit(sources, shots=shots)
        head.save(out)
        typer.echo(f"{len(head.rules)} rules from {head.fit_info['n_frames']} normal frames -> {out}")
        typer.echo(f"see them with: oddeye rules show {out}")

    rules_app = typer.Typer(help="Look at the rules of a video-rules model.", no_args_is_help=True)
    cli.app.add_typer(rules_app, name="rules")

    @rules_app.command("show")
    def rules_show(model_dir: Path = typer.Argument(..., help="Folder written by `oddeye fit video-rules`.")) -> None:
        """Print the rules of a fitted video-rules model, its scene zones and how the rules were made.

        Example: oddeye rules show models/ped2-rules
        """
        show_rules(model_dir)
