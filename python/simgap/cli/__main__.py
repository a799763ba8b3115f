"""``python -m simgap.cli``: the same as ``python -m simgap``."""

import sys

from .commands import main

sys.exit(main())
