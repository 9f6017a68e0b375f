"""``python -m predmaint`` is the ``predmaint`` command."""

import sys

from .cli import main

sys.exit(main())
