"""Past one machine: Ray runs batch scoring (`--ray` on score/eval) and live sources (`watch --ray`).

Nothing here imports Ray at module level: without `--ray`, Ray is never imported.
"""
