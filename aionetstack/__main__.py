"""``python -m aionetstack``: the command line (see :mod:`aionetstack.cli`)."""

import sys

from aionetstack.cli import main

sys.exit(main())
