"""Compact JSON text: how payloads, results and script arguments are encoded, and the
decoder of the hot paths.

One encoder built once: ``json.dumps`` with keyword arguments builds a new encoder on
every call, which was half the cost of encoding a small payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``
compact: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

#: ``json.loads`` without its per-call checks (bytes detection, keyword handling).
decode: Callable[[str], Any] = json.JSONDecoder().decode
