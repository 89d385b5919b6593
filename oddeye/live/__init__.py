"""Live sources (`oddeye watch`): streams, webcams, looped files and watched folders scored as they arrive.

    from oddeye.live.config import load_config
    from oddeye.live.runner import Watcher
    Watcher(load_config("watch.yaml")).run()        # until SIGTERM / Ctrl-C; every run closed on the way out

A source is one `LiveSource(spec, db)` (model + reader + writer) with `run(stop_event)`; see docs/live.md.
"""
