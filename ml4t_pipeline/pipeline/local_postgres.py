"""A throwaway PostgreSQL server for trying the team instance on one machine (and for tests).

`local_postgres()` makes a new cluster in a temporary folder with Debian's (or any) `initdb`,
starts it with `pg_ctl` listening on 127.0.0.1 only (a free port, no Unix socket outside the
folder), password authentication with a random password, creates the `dagster` database, and
yields the connection as the environment variables `deploy/dagster.postgres.yaml` reads. On
exit the server is stopped and the folder removed, also when the body fails.

PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` system user
(Debian's package creates it) and the server runs as that user.

    python -m ml4t_pipeline.pipeline.local_postgres -- dg dev -h 127.0.0.1 -p 3000

runs a command with a fresh server and a DAGSTER_HOME holding the Postgres instance file
(`make ui-postgres`); the server lives as long as the command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
DATABASE = "dagster"
USER = "dagster"
SERVICE_USER = "postgres"  # who owns and runs the cluster when we are root
START_TIMEOUT_S = 60
REPO = Path(__file__).resolve().parents[2]
INSTANCE_FILE = REPO / "deploy" / "dagster.postgres.yaml"
PROGRAMS = ("initdb", "pg_ctl", "createdb")


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server programs on this machine, or they cannot run here."""


@dataclass(frozen=True, slots=True)
class Connection:
    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.postgres.yaml reads its connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }


def server_programs() -> dict[str, Path]:
    """initdb, pg_ctl and createdb: from PATH, else the newest /usr/lib/postgresql/<v>/bin."""
    found = {name: shutil.which(name) for name in PROGRAMS}
    if all(found.values()):
        return {name: Path(p) for name, p in found.items() if p}
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    for bin_dir in reversed(versions):
        if all((bin_dir / name).is_file() for name in PROGRAMS):
            return {name: bin_dir / name for name in PROGRAMS}
    msg = "PostgreSQL server programs (initdb, pg_ctl) not found: apt-get install postgresql"
    raise PostgresUnavailableError(msg)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _service_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None for ourselves, `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        msg = f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as"
        raise PostgresUnavailableError(msg) from None


def _run(
    argv: Sequence[str | Path], account: pwd.struct_passwd | None, env: dict[str, str]
) -> None:
    done = subprocess.run(
        [str(a) for a in argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
        cwd="/",
    )
    if done.returncode != 0:
        msg = f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}"
        raise PostgresUnavailableError(msg.strip()[-2000:])


@contextlib.contextmanager
def local_postgres(parent: Path | None = None) -> Iterator[Connection]:
    """A fresh PostgreSQL cluster on 127.0.0.1 for the time of the `with` block."""
    programs = server_programs()
    account = _service_account()
    root = Path(tempfile.mkdtemp(prefix="ml4t-pg-", dir=parent))
    data = root / "data"
    password = secrets.token_urlsafe(24)
    started = False
    try:
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n", encoding="utf-8")
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        os.chmod(root, 0o700)
        os.chmod(pwfile, 0o600)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        _run(
            [
                programs["initdb"],
                "-D",
                data,
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            account,
            env,
        )
        pwfile.unlink()
        port = free_port()
        options = (
            f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories='{root}' "
            "-c fsync=off -c max_connections=200"
        )
        _run(
            [
                programs["pg_ctl"],
                "-D",
                data,
                "-l",
                root / "server.log",
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            account,
            env,
        )
        started = True
        login = {**env, "PGPASSWORD": password}
        _run(
            [programs["createdb"], "-h", HOST, "-p", str(port), "-U", USER, DATABASE],
            account,
            login,
        )
        yield Connection(host=HOST, port=port, user=USER, password=password, database=DATABASE)
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailableError):
                _run([programs["pg_ctl"], "-D", data, "-m", "fast", "-w", "stop"], account, env)
        shutil.rmtree(root, ignore_errors=True)


def instance_home(home: Path) -> Path:
    """`home` as a DAGSTER_HOME holding the Postgres instance file (copied there)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_FILE, home / "dagster.yaml")
    return home


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml4t_pipeline.pipeline.local_postgres",
        description="Run a command against a throwaway local PostgreSQL-backed Dagster instance.",
    )
    parser.add_argument(
        "--home",
        help="DAGSTER_HOME to use (default: a temporary folder, removed at the end, since the "
        "database it describes is thrown away too)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- dg dev")
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: the server stops too
    try:
        with contextlib.ExitStack() as stack:
            if args.home is None:
                home = instance_home(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            else:
                home = instance_home(Path(args.home).resolve())
            connection = stack.enter_context(local_postgres())
            env = {**os.environ, **connection.env(), "DAGSTER_HOME": str(home)}
            print(
                f"PostgreSQL on {connection.host}:{connection.port} (database "
                f"{connection.database}); DAGSTER_HOME={home}",
                file=sys.stderr,
            )
            child = subprocess.Popen(command, env=env, start_new_session=True)
            try:
                return child.wait()
            except KeyboardInterrupt:
                return _stop_group(child)
    except PostgresUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_group(child: subprocess.Popen[bytes]) -> int:
    """Ctrl-C: stop the command's whole process group (a `dg dev` and what it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    try:
        return child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        return child.wait()


if __name__ == "__main__":
    raise SystemExit(main())
