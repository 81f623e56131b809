"""``python -m selfcheck`` is the same as the ``selfcheck`` console script."""

import sys

from selfcheck.cli import main

sys.exit(main())
