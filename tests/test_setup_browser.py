"""``scripts/setup_browser.sh`` (run by ``./scripts/test``) shows why it could not install
Chromium or the npm fhirclient (issue 15, item 17): the installer's output is kept in a
log under ``.cache/setup-logs/`` and its last lines are printed with the warning, instead
of a bare "could not install chromium". The script runs here on a copy of the project
layout with a PATH of real basic tools plus a fake ``apt-get`` (and ``npm``) that fail
the way they do on a machine without network or packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup_browser.sh"
TOOLS = ("bash", "dirname", "id", "mkdir", "tail", "sed", "env")
"""What the script runs besides the installers (the rest are bash builtins)."""

APT_UPDATE_ERROR = "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease"
APT_INSTALL_ERROR = "E: Unable to locate package chromium-driver"
NPM_ERROR = "npm ERR! code ENOTFOUND"


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    path.chmod(0o755)


def _run(tmp_path: Path, *, npm: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "setup_browser.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (bin_dir / tool).symlink_to(found)
    _fake(
        bin_dir,
        "apt-get",
        'if [ "$1" = update ]; then\n'
        f'  echo "{APT_UPDATE_ERROR}  Temporary failure resolving" >&2\n'
        "else\n"
        '  echo "Reading package lists..."\n'
        f'  echo "{APT_INSTALL_ERROR}" >&2\n'
        "fi\n"
        "exit 100",
    )
    _fake(bin_dir, "sudo", '[ "$1" = -n ] && shift\nexec "$@"')  # when not run as root
    if npm:
        _fake(bin_dir, "npm", f'echo "{NPM_ERROR}" >&2\necho "npm ERR! network" >&2\nexit 1')
    result = subprocess.run(
        [str(bin_dir / "bash"), str(root / "scripts" / "setup_browser.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, root


def test_a_failed_apt_get_prints_its_cause(tmp_path: Path) -> None:
    result, root = _run(tmp_path, npm=False)
    assert result.returncode == 0  # the rest of the suite still runs; browser tests skip
    assert "could not install chromium" in result.stderr
    assert APT_INSTALL_ERROR in result.stderr  # the cause, not only the warning
    assert APT_UPDATE_ERROR in result.stderr  # what went wrong before it, too
    log = root / ".cache" / "setup-logs" / "apt.log"
    assert str(log) in result.stderr
    assert APT_INSTALL_ERROR in log.read_text()
    assert "no npm" in result.stderr


def test_a_failed_npm_install_prints_its_cause(tmp_path: Path) -> None:
    result, root = _run(tmp_path, npm=True)
    assert result.returncode == 0
    assert "could not install the npm fhirclient" in result.stderr
    assert NPM_ERROR in result.stderr
    assert NPM_ERROR in (root / ".cache" / "setup-logs" / "npm.log").read_text()


def test_the_script_is_run_by_scripts_test() -> None:
    test_script = (SCRIPT.parent / "test").read_text()
    assert "scripts/setup_browser.sh" in test_script
    assert os.access(SCRIPT, os.R_OK)
