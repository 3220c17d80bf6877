"""Where the embedded PostgreSQL cluster of a data dir lives, who owns it, and creating it (initdb).

A data dir's cluster is `DATA_DIR/pg`. As root, initdb and the server run as the `postgres` OS user (both
refuse root), and that user must traverse every parent of the cluster directory. A checkout in root's
home or under any 0700 directory is not reachable by it: then a persistent data dir (`make run`) keeps its
cluster under RELOCATED_BASE instead (`/var/lib/bazaar/pg-<hash of the resolved data dir>`, the base 0755
root, the cluster 0700 postgres) and `DATA_DIR/pg` becomes a symlink to it, so a second run, and anything
else that opens `DATA_DIR/pg`, finds it. Throwaway clusters (tests, benches) are never moved: their callers
make their temp dirs reachable.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from devstack.process import ServiceError

PG_SUPERUSER = "postgres"
RELOCATED_BASE = Path("/var/lib/bazaar")


def find_pg_bindir() -> Path | None:
    """Server binaries: $PG_BINDIR, `pg_config --bindir`, newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates: list[Path] = []
    if env := os.environ.get("PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    if on_path := shutil.which("postgres"):
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def server_user() -> str | None:
    """As root, the OS user that runs initdb and the server (initdb refuses root); else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceError(
            "running as root but there is no `postgres` OS user to run PostgreSQL as "
            "(install Debian's `postgresql` package, or set DATABASE_URL to an existing server)"
        ) from exc
    return "postgres"


def _as_user(user: str, *test: str) -> bool:
    """`test ...` run as `user`: e.g. whether it can reach (search) or write a directory."""
    return subprocess.run(["runuser", "-u", user, "--", "test", *test], check=False, cwd="/").returncode == 0


def relocated_dir(data_dir: Path) -> Path:
    """Where a data dir's cluster goes when `postgres` cannot reach the data dir (one per data dir path)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return RELOCATED_BASE / f"pg-{digest}"


def _free_relocated_dir(data_dir: Path) -> Path:
    """The first free of pg-<hash>, pg-<hash>-2, ...: one that is taken belongs to a data dir at this path
    that was deleted (its cluster is left alone: only a symlink pointed at it) or moved."""
    first = relocated_dir(data_dir)
    target, n = first, 1
    while target.exists() or target.is_symlink():
        n += 1
        target = first.with_name(f"{first.name}-{n}")
    return target


def _make_base() -> None:
    RELOCATED_BASE.mkdir(parents=True, exist_ok=True)
    os.chown(RELOCATED_BASE, 0, 0)
    RELOCATED_BASE.chmod(0o755)


def _unreachable(link: Path, user: str, *, cluster: bool) -> str:
    message = (
        f"the `{user}` OS user (which runs PostgreSQL as root) cannot reach {link}: a parent directory is "
        "not traversable by others (e.g. it is under /root or a 0700 directory)."
    )
    if not cluster:
        return f"{message} Put the data dir elsewhere (DATA_DIR=...) or `chmod o+x` its parents."
    target = _free_relocated_dir(link.parent)
    return (
        f"{message} It already holds a cluster, which devstack does not move by itself. Move it where that "
        f"user can reach it and leave a symlink in its place (the next run follows it): "
        f"`install -d -m 755 {RELOCATED_BASE} && mv {link} {target} && ln -s {target} {link}`; "
        "or `chmod o+x` the parents; or delete the data dir to start over."
    )


def _relocate(link: Path, user: str) -> Path:
    """Make `link` (absent, or a directory without a cluster: an earlier attempt) a symlink to a new empty
    directory under RELOCATED_BASE."""
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    _make_base()
    target = _free_relocated_dir(link.parent)
    target.mkdir(mode=0o700)
    link.symlink_to(target, target_is_directory=True)
    print(
        f"[devstack] PostgreSQL cluster in {target} ({link} links to it): the `{user}` OS user, which "
        f"runs it as root, cannot reach {link.parent}",
        flush=True,
    )
    return target


def cluster_dir(data_dir: Path, user: str | None, *, relocate: bool = False) -> Path:
    """`data_dir/pg`, resolved: created, owned by `user` (None: ourselves), mode 0700, reachable by `user`.

    `relocate`: when `user` cannot reach `data_dir`, keep the cluster under RELOCATED_BASE and make
    `data_dir/pg` a symlink to it (unless `data_dir/pg` already holds a cluster: that is an error that
    says how to move it); else that is an error.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / "pg"
    if user is not None and not link.is_symlink() and not _as_user(user, "-x", str(data_dir.resolve())):
        cluster = (link / "PG_VERSION").exists()
        if cluster or not relocate:
            raise ServiceError(_unreachable(link, user, cluster=cluster))
        _relocate(link, user)
    pgdata = link.resolve()
    if user is not None and pgdata.parent == RELOCATED_BASE:
        _make_base()  # e.g. a symlink left after RELOCATED_BASE was removed: a new, empty cluster
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is None:
        pgdata.chmod(0o700)
        return pgdata
    pw = pwd.getpwnam(user)
    if pgdata.stat().st_uid != pw.pw_uid:
        for path in [pgdata, *pgdata.rglob("*")]:
            os.lchown(path, pw.pw_uid, pw.pw_gid)
    pgdata.chmod(0o700)
    if not _as_user(user, "-w", str(pgdata)):
        raise ServiceError(_unreachable(pgdata, user, cluster=False))
    return pgdata


def initdb(bindir: Path, pgdata: Path, user: str | None) -> None:
    """Create the cluster in `pgdata` unless it holds one: superuser `postgres`, trust auth, UTF-8, no locale."""
    if (pgdata / "PG_VERSION").exists():
        return
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(pgdata),
        "-U",
        PG_SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-instructions",
    ]
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=pgdata)
    if done.returncode != 0:
        raise ServiceError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
