"""``python -m skconcepts``: the command line (see ``skconcepts --help``)."""

import sys

from ._cli import main

sys.exit(main())
