"""Video: data sets (datasets.py), the frame-prediction head (prediction/) and the rules head (rules/), with their
commands (cli.py, rules/cli.py); decoding lives in oddeye.core.videoio."""
