"""``python -m agents.sim ...`` = ``llmconsole sim-engine ...``."""

from __future__ import annotations

import sys

from agents.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
