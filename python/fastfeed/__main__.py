"""``python -m fastfeed``: the same command line as the ``fastfeed`` script."""

import sys

from .cli import main

sys.exit(main())
