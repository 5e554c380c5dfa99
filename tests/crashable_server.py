"""A private PostgreSQL server that tests may crash: `initdb` in a temporary folder, on a
free loopback port, stopped (and its folder removed) at the end whatever happens.

`crash()` is `pg_ctl stop -m immediate`: every backend dies without a checkpoint, and
the next `start()` runs crash recovery, exactly as after a power cut of the process
(unlogged tables come back empty). The binaries are pgserver's bundled ones when that
package is installed, else the system's (Debian's /usr/lib/postgresql/N/bin, or
`pg_ctl` on PATH). Never touches any other server.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 60  # any one pg_ctl / initdb call


def find_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: pgserver's bundle first, then the system's."""
    spec = importlib.util.find_spec("pgserver")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as `postgres` or `pgserver`
    (created the way pgserver itself does when it runs as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    if importlib.util.find_spec("pgserver") is not None:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CrashableServer:
    """`with CrashableServer() as pg: url = pg.url("postgres"); pg.crash(); pg.start()`."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.user = _unprivileged_user()
        if os.geteuid() == 0 and self.user is None:
            raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")
        self.root = Path(tempfile.mkdtemp(prefix="crashable-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.running = False

    def __enter__(self) -> "CrashableServer":
        atexit.register(self.close)  # also when pytest exits without tearing down
        try:
            self._initdb()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], cwd=self.root,
                              user=self.user, capture_output=True, text=True, timeout=TIMEOUT_S)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} {args[1:]} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{tail}")

    def _initdb(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "--encoding=UTF8", "--no-sync", "--no-instructions")

    def start(self) -> None:
        """Start (after a crash: recover) and wait until it accepts connections.

        fsync=off: a crash here kills processes, not the machine, so the WAL the kernel
        holds survives it and recovery replays it; commits stay synchronous."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=40 -c shared_buffers=32MB")
        self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", str(TIMEOUT_S),
                  "-l", str(self.root / "server.log"), "-o", options)
        self.running = True

    def crash(self) -> None:
        """Immediate stop: backends die mid-transaction; the next start recovers."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                  "-t", str(TIMEOUT_S))
        self.running = False

    def close(self) -> None:
        """Stop the server if it runs, whatever state it is in, and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w",
                              "-t", "20")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                              "-t", "20")
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)
