"""Schedules as code: ``dtq schedules sync [--dry-run] [--dir schedules]``.

Each ``*.toml`` file in the folder declares schedules as tables named after them::

    [daily-report]
    cron = "0 9 * * MON-FRI"
    timezone = "Europe/Berlin"
    overlap = "skip"

    [daily-report.task]
    name = "reports.daily"
    payload = { format = "pdf" }

The files are the whole truth for the schedules they manage: sync creates what is
declared, updates what differs (an omitted field means its default), and deletes a
file-made schedule whose declaration is gone. Schedules created through the API are
never touched; a file declaring one of their names is an error. The diff is printed
before anything changes, and ``--dry-run`` stops there.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.core.clock import utcnow
from chalicelib.core.errors import DTQError, ValidationError
from chalicelib.record.store import Row
from chalicelib.service.schedules import DEFAULTS, FIELDS, Schedules, parse_schedule, spec_of

SOURCE_PREFIX = "file:"


@dataclass(frozen=True)
class Declared:
    name: str
    body: dict[str, Any]
    source: str  #: "file:<file name>", stored in dtq_schedules.source


@dataclass(frozen=True)
class Change:
    action: str  #: "create", "update" or "delete"
    name: str
    source: str | None
    body: dict[str, Any] | None = None
    schedule_id: str | None = None
    diff: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f" ({self.source.removeprefix(SOURCE_PREFIX)})" if self.source else ""
        if self.action == "create":
            assert self.body is not None
            return f"+ {self.name}{where}: {self.body['cron']!r} in {self.body['timezone']}"
        if self.action == "delete":
            return f"- {self.name}{where}"
        return f"~ {self.name}{where}: " + "; ".join(self.diff)


def load(folder: Path) -> dict[str, Declared]:
    """Every schedule declared in ``folder/*.toml`` (none if the folder is missing)."""
    found: dict[str, Declared] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DTQError(f"{path}: {exc}") from None
        for name, table in data.items():
            if not isinstance(table, dict):
                raise DTQError(f"{path}: {name!r} must be a table ([{name}]) of schedule fields")
            if "name" in table:
                raise DTQError(f"{path}: [{name}]: the table's name is the schedule's name")
            if name in found:
                raise DTQError(
                    f"{path}: schedule {name!r} is declared in "
                    f"{found[name].source.removeprefix(SOURCE_PREFIX)} too"
                )
            # Omitted fields mean their defaults: the file is the whole truth.
            body = {**DEFAULTS, **table, "name": name}
            found[name] = Declared(name, body, SOURCE_PREFIX + path.name)
    return found


def plan(declared: dict[str, Declared], rows: list[Row], max_payload_bytes: int) -> list[Change]:
    """The changes that make the file-made schedules match the declarations."""
    by_name = {r["name"]: r for r in rows}
    changes = []
    for name, d in sorted(declared.items()):
        try:
            spec = parse_schedule(d.body, max_payload_bytes=max_payload_bytes)
        except ValidationError as exc:
            where = d.source.removeprefix(SOURCE_PREFIX)
            raise DTQError(f"{where}: schedule {name!r}: {exc.message}") from None
        body = {k: getattr(spec, k) for k in FIELDS}
        row = by_name.get(name)
        if row is None:
            changes.append(Change("create", name, d.source, body))
            continue
        if row["source"] is None:
            raise DTQError(
                f"schedule {name!r} exists and was created through the API; "
                "rename the declaration or delete that schedule first"
            )
        try:
            current: dict[str, Any] = {k: getattr(spec_of(row), k) for k in FIELDS}
        except TypeError:
            current = {}
        diff = [
            f"{k} {current.get(k)!r} -> {body[k]!r}" for k in FIELDS if current.get(k) != body[k]
        ]
        if row["source"] != d.source:
            diff.append(f"source {row['source']!r} -> {d.source!r}")
        if diff:
            changes.append(Change("update", name, d.source, body, str(row["id"]), diff))
    for row in sorted(rows, key=lambda r: str(r["name"])):
        if row["source"] is not None and row["name"] not in declared:
            changes.append(Change("delete", row["name"], row["source"], None, str(row["id"])))
    return changes


def apply(schedules: Schedules, changes: list[Change]) -> None:
    now = utcnow()
    for c in changes:
        if c.action == "create":
            schedules.create(c.body, now, source=c.source)
        elif c.action == "update":
            assert c.schedule_id is not None
            schedules.update(c.schedule_id, c.body, now, source=c.source)
        else:
            assert c.schedule_id is not None
            schedules.delete(c.schedule_id)


def sync(schedules: Schedules, folder: Path, *, dry_run: bool, out: Any) -> list[Change]:
    declared = load(folder)
    changes = plan(declared, schedules.rows(), schedules.tasks.payload_limit)
    for c in changes:
        print(c.describe(), file=out)
    if not changes:
        print(f"schedules in sync with {folder}/*.toml ({len(declared)} declared)", file=out)
    elif dry_run:
        print(f"dry run: {len(changes)} change(s) not applied", file=out)
    else:
        apply(schedules, changes)
        print(f"applied {len(changes)} change(s)", file=out)
    return changes


def cmd_sync(args: argparse.Namespace) -> int:
    import sys

    from chalicelib.core.settings import Settings
    from chalicelib.service import deps

    folder = Path(args.dir)
    if not folder.is_dir():
        raise DTQError(f"--dir {args.dir!r}: no such folder")
    svc = deps.build(Settings.from_env(os.environ), pool_size=2)
    try:
        sync(Schedules(svc.tasks), folder, dry_run=args.dry_run, out=sys.stdout)
    finally:
        svc.close()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("schedules", help="schedules as code (schedules/*.toml)")
    sub = p.add_subparsers(dest="schedules_verb", required=True)
    s = sub.add_parser("sync", help="create/update/delete schedules to match the TOML files")
    s.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    s.add_argument("--dir", default="schedules", help="folder of *.toml files (default: schedules)")
    s.set_defaults(func=cmd_sync)
