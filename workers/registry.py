"""Task name → handler, and loading the users' handler modules (``--tasks``/``DTQ_TASKS``).

A user module registers plain functions with ``@dtq.task`` (the public front of
:func:`task`, which registers in :data:`DEFAULT`)::

    import dtq

    @dtq.task("reports.daily")
    def daily(payload, ctx):
        ...
        return {"rows": 3}

A handler takes ``(payload, ctx)`` or just ``(payload)``; it returns a JSON-serialisable
result, raises to fail the attempt, or raises ``dtq.Retry(delay_seconds)``
to ask for another attempt after a chosen delay.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from chalicelib.core.errors import ConfigError
from workers import builtin

#: What the worker calls: ``handler(payload, ctx)``.
Handler = Callable[[dict[str, Any], Any], Any]


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, name: str, fn: Callable[..., Any]) -> None:
        self._handlers[name] = _normalise(fn)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def update(self, other: Registry) -> None:
        self._handlers.update(other._handlers)


#: Where :func:`task` registers; the worker copies it after importing the user modules.
DEFAULT = Registry()


def task(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` under the task name ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        DEFAULT.add(name, fn)
        return fn

    return deco


def _normalise(fn: Callable[..., Any]) -> Handler:
    # Decided once at registration so that the hot path is one plain call.
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        varargs = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume (payload, ctx)
        return fn
    if len(params) >= 2 or varargs:
        return fn
    if len(params) == 1:
        return lambda payload, ctx: fn(payload)
    return lambda payload, ctx: fn()


def load(modules: Iterable[str]) -> Registry:
    """Built-in tasks plus every handler the named modules register on import. A module
    may also define ``register(registry)`` to add handlers explicitly."""
    registry = Registry()
    for name, handler in builtin.HANDLERS.items():
        registry.add(name, handler)
    extra = Registry()
    for name in (m.strip() for m in modules):
        if not name:
            continue
        module = import_module(name, "--tasks")
        hook = getattr(module, "register", None)
        if callable(hook):
            hook(extra)
    registry.update(DEFAULT)
    registry.update(extra)
    return registry


def use_import_path(folders: Sequence[str]) -> list[str]:
    """Put ``folders`` first on the import path, in their order (relative ones are taken
    from the current folder): where ``--tasks`` modules are found, before anything
    installed. Returns them as absolute paths."""
    resolved = [os.path.abspath(folder) for folder in folders]
    for folder in resolved:
        if not os.path.isdir(folder):
            raise ConfigError(f"--path: {folder!r} is not a folder")
    for folder in reversed(resolved):
        while folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    return resolved


def import_module(name: str, option: str) -> ModuleType:
    """Import a module a user named with ``option``. Whatever its import raises becomes a
    ConfigError naming the module, with the original exception and where it was raised
    (the last frame outside the import machinery)."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(f"{option}: cannot import {name!r}: {_why(name, exc)}") from exc


def _why(name: str, exc: Exception) -> str:
    text = "".join(traceback.format_exception_only(exc)).rstrip()
    if isinstance(exc, SyntaxError):  # the text shows the file, line and the code
        return text
    if isinstance(exc, ModuleNotFoundError) and exc.name == name.partition(".")[0]:
        return f"{text} (run from the folder that holds it, or name that folder with --path)"
    machinery = (__file__, importlib.__file__)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ") and frame.filename not in machinery
    ]
    if not frames:
        return text
    last = frames[-1]
    return f'{text}\n  File "{last.filename}", line {last.lineno}, in {last.name}\n    {last.line}'
