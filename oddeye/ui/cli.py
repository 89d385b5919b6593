"""Commands of the review side: `oddeye ui`, `oddeye threshold suggest`, `oddeye store info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from oddeye.core.errors import InputError

APP = Path(__file__).resolve().parent / "app.py"
DB_HELP = "The review store: a SQLite file path or a postgresql://user:pass@host:5432/db URL."


def _db_arg(db: str) -> str:
    """An existing store: absolute path for a file (the dashboard runs in another process), a URL unchanged."""
    from oddeye.store.api import is_url

    if is_url(db):
        return db
    p = Path(db).expanduser().resolve()
    if not p.exists():
        raise InputError(f"no store at {p}", "pass the store.db that `oddeye score`/`oddeye demo` wrote (--db)")
    return str(p)


def streamlit_command(db: str, port: int, host: str) -> list[str]:
    """The `streamlit run` command line that serves the dashboard for `db` on host:port."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer", "--", "--db", db]


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run the Streamlit server `cmd`: on POSIX this process becomes it (exec), so SIGTERM/SIGINT reach the server
    and nothing is left running when `oddeye ui` is stopped; elsewhere as a child, waited for."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(cmd[0], cmd, env)  # does not return
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def register(cli) -> None:  # noqa: ANN001 - oddeye.cli.CliGroups
    """Add `ui`, `threshold suggest` and `store info`."""
    threshold = typer.Typer(help="Thresholds from what reviewers labelled.", no_args_is_help=True)
    store = typer.Typer(help="Inspect a review store.", no_args_is_help=True)
    cli.app.add_typer(threshold, name="threshold")
    cli.app.add_typer(store, name="store")

    @cli.app.command("ui")
    def ui(db: str = typer.Option(..., "--db", help=DB_HELP),
           port: int = typer.Option(8501, "--port", help="Port to serve on."),
           host: str = typer.Option("127.0.0.1", "--host",
                                    help="Address to serve on; 127.0.0.1 keeps it on this machine. "
                                         "Set ODDEYE_UI_PASSWORD to require a password.")) -> None:
        """Open the review dashboard (Streamlit) on a store: runs, video timelines, images, 3D, patrol, labels.

        Example: oddeye ui --db oddeye-demo/store.db --port 8501
        """
        from oddeye.store.api import open_store

        if not 0 < port < 65536:
            raise InputError(f"--port must be in 1..65535, got {port}")
        target = _db_arg(db)
        with open_store(target) as st:  # a bad store is a clear error here, not inside the browser
            n = len(st.runs())
        if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("ODDEYE_UI_PASSWORD"):
            typer.echo(f"warning: serving on {host} without a password; set ODDEYE_UI_PASSWORD", err=True)
        typer.echo(f"oddeye ui: {n} run(s) in {target}; open http://{host}:{port}  (Ctrl-C to stop)")
        raise typer.Exit(serve(streamlit_command(target, port, host), {**os.environ, "ODDEYE_UI_DB": target}))

    @threshold.command("suggest")
    def suggest(db: str = typer.Option(..., "--db", help=DB_HELP),
                run: int = typer.Option(..., "--run", help="Run id (see `oddeye store info`)."),
                max_false_alarm_rate: float = typer.Option(
                    0.05, "--max-false-alarm-rate", help="Share of labelled false alarms allowed to still fire."),
                apply: bool = typer.Option(False, "--apply", help="Store it as the run's threshold.")) -> None:
        """Propose a threshold from labelled events/samples; the last stdout line is JSON.

        Example: oddeye threshold suggest --db results/store.db --run 3 --max-false-alarm-rate 0.05 --apply
        """
        from oddeye.store.api import open_store
        from oddeye.ui.threshold import apply_threshold, suggest_threshold

        with open_store(_db_arg(db)) as st:
            s = suggest_threshold(st, run, max_false_alarm_rate)
            typer.echo(f"run {run}: threshold {s['threshold']:.6g} keeps {s['true_anomalies_kept']}/"
                       f"{s['n_true_anomaly']} true anomalies and {s['false_alarms_kept']}/{s['n_false_alarm']} "
                       f"false alarms ({s['n_unsure']} unsure ignored)")
            if apply:
                apply_threshold(st, run, s)
                typer.echo("applied")
        typer.echo(json.dumps(s))

    @store.command("info")
    def info(db: str = typer.Option(..., "--db", help=DB_HELP)) -> None:
        """List the runs in a store and count its rows.

        Example: oddeye store info --db oddeye-demo/store.db
        """
        from oddeye.store.api import open_store

        with open_store(_db_arg(db)) as st:
            typer.echo(f"store {st.name} (schema {st.revision})")
            typer.echo("  " + ", ".join(f"{k} {v}" for k, v in st.counts().items()))
            for r in st.runs():
                m = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(r["metrics"].items())[:6])
                typer.echo(f"  run {r['id']:>4}  {r['created']:%Y-%m-%d %H:%M}  {r['head']:<18} {r['kind']:<6} "
                           f"samples {r['n_samples']:<6} events {r['n_events']:<6} {m}")
