"""python -m taskring: see taskring.cli."""

import sys

from .cli import main

sys.exit(main())
