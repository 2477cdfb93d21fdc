"""What the HTTP views need, built once per process on first use.

``current()`` builds it from the environment (through ``deps.services()``), once per
Lambda container or ``dtq api`` process. Tests and embedders call ``use(services)`` to
point the app at their own :class:`~chalicelib.service.deps.Services` instead; that is the only
hook, so no test needs to patch anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from chalicelib.api.auth import TokenIssuer
from chalicelib.api.httpstats import HttpStats
from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.fleet import Fleet
from chalicelib.service.logins import Logins
from chalicelib.service.secrets import load_jwt_secret


@dataclass
class Web:
    services: deps.Services
    issuer: TokenIssuer
    fleet: Fleet
    logins: Logins
    http_stats: HttpStats

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def close(self) -> None:
        """Flush the HTTP figures; the services themselves belong to whoever built them."""
        self.http_stats.close()


def build(services: deps.Services) -> Web:
    settings = services.settings
    issuer = TokenIssuer(
        load_jwt_secret(settings),
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds,
    )
    return Web(
        services=services,
        issuer=issuer,
        fleet=Fleet(services.queue, services.store),
        logins=Logins(services.store, services.redis, services.keys),
        http_stats=HttpStats(services.redis, services.keys.http_stats),
    )


_current: Web | None = None
_lock = threading.Lock()


def current() -> Web:
    """The process-wide context, built from the environment on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build(deps.services())
    return _current


def use(services: deps.Services | None) -> Web | None:
    """Serve the app from ``services`` (None: back to the environment's, on next use).
    Returns the new context, and closes the one it replaces."""
    global _current
    with _lock:
        old, _current = _current, (build(services) if services is not None else None)
    if old is not None:
        old.close()
    return _current
