"""The interpreter the benchmark's children run: the package as a wheel would install it.

The development venv installs luxonis-telemetry in editable mode: a ``.pth``
file imports setuptools' finder at every interpreter start, and that finder
imports ``pathlib``, ``importlib.util`` and friends. Those modules are then
already loaded when a child imports the package, so their cost (several ms)
vanishes from both sides of a comparison, and ``python -c pass`` measures a
start-up no user of a wheel has. So the children run in a throw-away venv
whose site-packages holds a byte-compiled copy of the package (what
``pip install`` of the wheel leaves) plus its metadata and console script;
the dependencies (posthog, requests, typer...) are reached through a path
``.pth`` pointing at the development venv's site-packages. Lines of a
``.pth`` that name folders add them to ``sys.path`` without reading the
``.pth`` files inside them, so the editable finder is never installed.
The copy is a snapshot taken when the benchmark starts: the tree may change
under a long run, the measured code does not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchEnv", "build"]

_PACKAGE = "luxonis_telemetry"
_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from luxonis_telemetry.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


@dataclass(frozen=True)
class BenchEnv:
    """Where the children's interpreter and console script live."""

    python: str
    script: str
    site_packages: Path
    editable_python: str


def _installed_metadata(site_packages: Path) -> Path:
    found = sorted(site_packages.glob("luxonis_telemetry-*.dist-info"))
    if not found:
        raise RuntimeError(f"luxonis-telemetry is not installed in {site_packages}")
    return found[-1]


def build(root: Path, folder: Path) -> BenchEnv:
    """A venv under ``folder`` with a byte-compiled copy of ``root``'s package."""
    dev_site = Path(sysconfig.get_paths()["purelib"])
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    shutil.copytree(
        root / _PACKAGE, site / _PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    metadata = _installed_metadata(dev_site)
    target = site / metadata.name
    target.mkdir()
    for name in ("METADATA", "entry_points.txt", "top_level.txt", "WHEEL"):
        if (metadata / name).exists():
            shutil.copy2(metadata / name, target / name)
    (target / "INSTALLER").write_text("bench\n")
    (site / "bench-dependencies.pth").write_text(f"{dev_site}\n")
    # pip byte-compiles a wheel's modules as it installs them
    subprocess.run([str(python), "-m", "compileall", "-q", str(site / _PACKAGE)], check=True)
    script = venv / "bin" / "luxonis-telemetry"
    script.write_text(_SCRIPT.format(python=python))
    script.chmod(0o755)
    return BenchEnv(
        python=str(python),
        script=str(script),
        site_packages=site,
        editable_python=sys.executable,
    )
