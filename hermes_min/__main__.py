"""`python -m hermes_min` is the hermes command."""

import sys

from .cli import main

sys.exit(main())
