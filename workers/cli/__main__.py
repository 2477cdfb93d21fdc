"""``python -m workers.cli``: the ``dtq`` command without its console script (what the
worker's recorder child and the container health check start)."""

from __future__ import annotations

import sys

from workers.cli import main

sys.exit(main())
