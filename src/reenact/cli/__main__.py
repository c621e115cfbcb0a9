"""``python -m reenact.cli`` (how ``reenact benchmark`` starts each stage's process)."""

import sys

from reenact.cli import main

sys.exit(main())
