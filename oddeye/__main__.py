"""`python -m oddeye` runs the CLI."""

import sys

from oddeye.cli import main

sys.exit(main())
