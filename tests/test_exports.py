"""What each public module exports, and the import rules that keep the package light (issue 11.7).

A name in ``__all__`` is a promise: luxonis-ml re-exports ours with ``from
luxonis_telemetry import *`` and ``from luxonis_telemetry.<module> import ...``,
so a removed or renamed name breaks every tool that calls it. Changing one of
the lists below is an API change: say so in CHANGELOG.md.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "luxonis_telemetry"

EXPORTS: dict[str, list[str]] = {
    "luxonis_telemetry": [
        "RESERVED_METADATA_KEYS",
        "DeliveryError",
        "NoopBackend",
        "PostHogBackend",
        "StdoutBackend",
        "Telemetry",
        "TelemetryBackend",
        "TelemetryConfig",
        "TelemetryDefaults",
        "TelemetryError",
        "TelemetryEvent",
        "UploadResult",
        "__version__",
        "get_or_init",
        "get_telemetry",
        "host_context",
        "host_context_provider",
        "initialize_telemetry",
        "instrument_cyclopts",
        "instrument_typer",
        "is_ci",
        "is_luxonis_cloud",
        "is_suppressed",
        "normalized_processor",
        "register_backend",
        "sanitize_properties",
        "shutdown_on_exit",
        "skip_telemetry",
        "suppress_telemetry",
        "system_context",
        "system_context_provider",
        "upload",
    ],
    "luxonis_telemetry.config": [
        "DEFAULT_ENDPOINT",
        "ENV_VARIABLES",
        "Decision",
        "TelemetryConfig",
        "TelemetryDefaults",
        "config_dir",
        "decide_mode",
        "exit_budget",
        "install_id_path",
        "is_ci",
        "parse_bool",
        "read_dotenv",
        "ignored_settings",
        "running_under_test_or_ci",
        "settings_path",
        "spool_dir",
    ],
    "luxonis_telemetry.context": [
        "BASE_CONTEXT_KEYS",
        "RESERVED_METADATA_KEYS",
        "base_context",
        "host_context",
        "host_context_provider",
        "is_ci",
        "is_luxonis_cloud",
        "normalized_processor",
        "spooled_context",
        "system_context",
        "system_context_provider",
        "system_metadata",
    ],
    "luxonis_telemetry.events": ["TelemetryEvent"],
    "luxonis_telemetry.redaction": [
        "DEFAULT_BLOCKED_KEYS",
        "DEFAULT_REDACT_KEYS",
        "MAX_MAPPING_ITEMS",
        "MAX_SEQUENCE_ITEMS",
        "REDACTED",
        "Sanitizer",
        "sanitize_properties",
    ],
    "luxonis_telemetry.suppression": ["is_suppressed", "suppress_telemetry"],
    "luxonis_telemetry.singleton": [
        "get_or_init",
        "get_telemetry",
        "initialize_telemetry",
        "shutdown_on_exit",
    ],
    "luxonis_telemetry.client": ["ContextProvider", "SystemContextProvider", "Telemetry"],
    "luxonis_telemetry.backends": [
        "TELEMETRY_BACKENDS",
        "BackendUnavailable",
        "BatchBackend",
        "DeliveryError",
        "NoopBackend",
        "PostHogBackend",
        "StdoutBackend",
        "TelemetryBackend",
        "build_backend",
        "is_registered",
        "register_backend",
        "to_posthog_message",
    ],
    "luxonis_telemetry.instrument": [
        "COMMAND_EVENT",
        "instrument_cyclopts",
        "instrument_typer",
        "skip_telemetry",
    ],
    "luxonis_telemetry.testing": [
        "Action",
        "FakePostHog",
        "MemoryBackend",
        "ReceivedBatch",
        "capture_events",
        "reset",
    ],
    "luxonis_telemetry.uploader": [
        "UploadResult",
        "open_spool",
        "plan",
        "sending_blocked",
        "upload",
    ],
    "luxonis_telemetry.bundle": [
        "BUNDLE_FORMAT",
        "MAX_RATIO",
        "BundleError",
        "BundleInfo",
        "export_bundle",
        "read_bundle",
        "upload_bundle",
    ],
    "luxonis_telemetry.status": ["TURN_OFF", "gather_status", "unsafe_files"],
    "luxonis_telemetry.record": [
        "MAX_RECORD_BYTES",
        "RECORD_VERSION",
        "Record",
        "encode",
        "encode_context",
        "encode_line",
        "json_string",
        "new_record",
        "now_iso",
        "validate",
        "wire_context",
    ],
    "luxonis_telemetry.cli": ["add_commands", "app", "main"],
}

# The public names of luxonis-ml 0.10.2's ``luxonis_ml.telemetry`` modules, by the module of
# ours of the same name that luxonis-ml re-exports (docs/migrating-from-luxonis-ml.md).
# Left out: ``singleton.TelemetryKey`` (an internal key).
LUXONIS_ML_NAMES: dict[str, list[str]] = {
    "luxonis_telemetry": [
        "Telemetry",
        "TelemetryConfig",
        "TelemetryDefaults",
        "get_or_init",
        "get_telemetry",
        "host_context",
        "host_context_provider",
        "initialize_telemetry",
        "shutdown_on_exit",
        "suppress_telemetry",
        "system_context",
        "system_context_provider",
    ],
    "luxonis_telemetry.config": ["TelemetryConfig", "TelemetryDefaults"],
    "luxonis_telemetry.client": ["ContextProvider", "SystemContextProvider", "Telemetry"],
    "luxonis_telemetry.context": [
        "RESERVED_METADATA_KEYS",
        "base_context",
        "host_context",
        "host_context_provider",
        "is_ci",
        "is_luxonis_cloud",
        "normalized_processor",
        "system_context",
        "system_context_provider",
    ],
    "luxonis_telemetry.events": ["TelemetryEvent"],
    "luxonis_telemetry.redaction": [
        "DEFAULT_BLOCKED_KEYS",
        "DEFAULT_REDACT_KEYS",
        "MAX_MAPPING_ITEMS",
        "MAX_SEQUENCE_ITEMS",
        "sanitize_properties",
    ],
    "luxonis_telemetry.singleton": [
        "get_or_init",
        "get_telemetry",
        "initialize_telemetry",
        "shutdown_on_exit",
    ],
    "luxonis_telemetry.suppression": ["is_suppressed", "suppress_telemetry"],
    "luxonis_telemetry.backends": [
        "TELEMETRY_BACKENDS",
        "NoopBackend",
        "PostHogBackend",
        "StdoutBackend",
        "TelemetryBackend",
    ],
    "luxonis_telemetry.instrument": ["instrument_cyclopts", "instrument_typer", "skip_telemetry"],
}

# What ``import luxonis_telemetry`` must not load: network and CLI code, and the standard
# modules whose import costs milliseconds at every start of every tool.
NOT_LOADED_BY_IMPORT = (
    "asyncio",
    "click",
    "cyclopts",
    "dataclasses",
    "logging",
    "pathlib",
    "platformdirs",
    "posthog",
    "requests",
    "rich",
    "typer",
    "typing",
    "urllib",
    "uuid",
)

# Third-party packages and the only files (paths relative to the package; a trailing "/"
# means a folder) allowed to import them.
IMPORTED_ONLY_BY: dict[str, tuple[str, ...]] = {
    "posthog": ("backends/_posthog.py", "backends/_transport.py"),
    "requests": ("backends/_posthog.py", "backends/_transport.py"),
    "urllib3": ("backends/_posthog.py", "backends/_transport.py"),
    "typer": ("cli/", "instrument.py"),
    "click": ("cli/", "instrument.py"),
    "rich": ("cli/", "instrument.py"),
    "cyclopts": ("instrument.py",),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _isort_order(name: str) -> tuple[int, list[int | str]]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then the rest, each in natural order."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural: list[int | str] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return group, natural


# -- __all__ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_all_is_pinned(name: str) -> None:
    exported = list(_module(name).__all__)
    missing = sorted(set(EXPORTS[name]) - set(exported))
    added = sorted(set(exported) - set(EXPORTS[name]))
    assert (missing, added) == ([], []), f"{name}.__all__: missing {missing}, new {added}"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_all_is_sorted(name: str) -> None:
    """Sorted as ``ruff`` (RUF022) sorts it, so a diff of ``__all__`` shows only real changes."""
    exported = list(_module(name).__all__)
    assert exported == sorted(exported, key=_isort_order)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_exported_name_resolves(name: str) -> None:
    """``from module import name`` works for every name: luxonis-ml's re-export relies on it."""
    module = _module(name)
    unresolved = [n for n in module.__all__ if not hasattr(module, n)]
    assert unresolved == [], f"{name}.__all__ names what the module does not have: {unresolved}"


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_star_import_works(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # noqa: S102 - the import luxonis-ml ships
    assert set(_module(name).__all__) <= set(namespace)


def _missing_docstring(value: object) -> bool:
    if getattr(value, "__origin__", None) is not None:
        return False  # a type alias such as Callable[...] cannot carry a docstring of its own
    if inspect.isclass(value):
        doc = vars(value).get("__doc__")
        if dataclasses.is_dataclass(value) and isinstance(doc, str):
            # a dataclass without a docstring gets its signature as one
            return doc.startswith(f"{value.__name__}(")
    elif inspect.isroutine(value) or inspect.ismodule(value):
        doc = getattr(value, "__doc__", None)
    else:
        return False  # constants and instances
    return not (isinstance(doc, str) and doc.strip())


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = _module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no module docstring"
    undocumented = [
        n for n in module.__all__ if hasattr(module, n) and _missing_docstring(getattr(module, n))
    ]
    assert undocumented == [], f"{name}: no docstring on {undocumented}"


@pytest.mark.parametrize("name", sorted(LUXONIS_ML_NAMES))
def test_luxonis_mls_public_names_are_in_the_same_named_module(name: str) -> None:
    missing = sorted(set(LUXONIS_ML_NAMES[name]) - set(_module(name).__all__))
    assert missing == [], f"luxonis-ml's names missing from {name}.__all__: {missing}"


# -- what importing costs --------------------------------------------------------------------


def test_import_loads_no_heavy_or_slow_module() -> None:
    """Measured without ``site`` so that nothing a ``.pth`` file loads at start hides a module.

    (The editable install's finder imports ``pathlib`` and ``urllib`` before any code runs;
    a wheel install does not.)
    """
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {site_packages!r}]\n"
        "before = set(sys.modules)\n"
        "import luxonis_telemetry\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "luxonis_telemetry" in loaded
    found = sorted(module for module in loaded if module.split(".")[0] in NOT_LOADED_BY_IMPORT)
    assert found == [], f"import luxonis_telemetry loads {found}"


CAPTURE_LOADS = """
import sys
sys.path[:0] = [{repo!r}, {site!r}]
import luxonis_telemetry
before = set(sys.modules)
luxonis_telemetry.Telemetry("bench").capture(
    "train.start", {{"epochs": 20, "model": "yolov8n", "lr": 0.001, "dataset": "coco"}}
)
print("\\n".join(sorted(set(sys.modules) - before)))
"""


def test_capturing_loads_no_slow_module_on_any_run(home: Path) -> None:
    """Issue 12: the second run of a tool read the install id through ``re`` (~6 ms)."""
    code = CAPTURE_LOADS.format(repo=str(REPO), site=sysconfig.get_paths()["purelib"])
    for run in ("first", "second"):
        result = subprocess.run(
            [sys.executable, "-S", "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
        )
        assert result.returncode == 0, result.stderr
        loaded = result.stdout.split()
        slow = sorted(m for m in loaded if m.split(".")[0] in (*NOT_LOADED_BY_IMPORT, "re"))
        assert slow == [], f"{run} run's capture loads {slow}"
    assert (home / ".config" / "luxonis-telemetry" / "install_id").is_file()


# -- import rules between the modules ---------------------------------------------------------


def _package_of(path: Path) -> list[str]:
    """The package a relative import in ``path`` starts from (its folder, also for __init__)."""
    return list(path.relative_to(REPO).parts[:-1])


def _is_module(package: list[str], name: str) -> bool:
    folder = REPO.joinpath(*package)
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def _private_name_imports(source: str, here: list[str]) -> list[str]:
    """``from .x import _name`` where ``_name`` is not itself a module; ``here``: the package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            package = here[: len(here) - (node.level - 1)]
        elif (node.module or "").split(".")[0] == "luxonis_telemetry":
            package = []
        else:
            continue
        if node.module:
            package = [*package, *node.module.split(".")]
        for alias in node.names:
            name = alias.name
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            if private and not _is_module(package, name):
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} ")
                found[-1] += f"import {name}"
    return found


@pytest.mark.parametrize("path", _source_files(), ids=_relative)
def test_no_module_imports_anothers_private_names(path: Path) -> None:
    """Private modules may be imported (``from . import _fs``); private names may not."""
    source = path.read_text(encoding="utf-8")
    assert _private_name_imports(source, _package_of(path)) == []


def _third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def _allowed(relative: str, places: tuple[str, ...]) -> bool:
    return any(relative.startswith(p) if p.endswith("/") else relative == p for p in places)


def test_heavy_packages_are_imported_only_where_they_belong() -> None:
    misplaced = sorted(
        f"{_relative(path)} imports {package}"
        for path in _source_files()
        for package in _third_party_imports(path) & set(IMPORTED_ONLY_BY)
        if not _allowed(_relative(path), IMPORTED_ONLY_BY[package])
    )
    assert misplaced == []


def test_the_rules_see_real_imports() -> None:
    """The scans above find what they look for, so a passing run means something."""
    assert _third_party_imports(PACKAGE / "backends" / "_posthog.py") >= {"posthog"}
    assert _third_party_imports(PACKAGE / "instrument.py") >= {"cyclopts", "typer"}
    cli = _package_of(PACKAGE / "cli" / "_inspect.py")
    assert cli == ["luxonis_telemetry", "cli"]
    allowed = "from . import _app\nfrom .. import _fs\nfrom ..backends import _registry\n"
    assert _private_name_imports(allowed, cli) == []
    forbidden = (
        "from ._app import _hidden\n"
        "from ..uploader import _remember\n"
        "from luxonis_telemetry.backends._registry import _factories\n"
        "from . import _no_such_module\n"
    )
    assert len(_private_name_imports(forbidden, cli)) == 4
