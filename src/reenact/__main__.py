"""``python -m reenact`` is the ``reenact`` command."""

import sys

from reenact.cli import main

sys.exit(main())
