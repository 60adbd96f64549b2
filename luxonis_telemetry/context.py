"""What every event says about where it came from, computed cheaply and without processes.

The base context (OS, Python, library, session, install id, CI, source
component) is computed once per process and cached by the client. The system
metadata added with ``include_system_metadata`` stays coarse: nothing that
identifies the person or the machine. Nothing here starts a process (the
``platform`` module runs ``uname -p`` for some calls): ``os.uname()`` and
the interpreter say all we need. The luxonis-ml names (``system_context``,
``host_context``, their providers, ``RESERVED_METADATA_KEYS``...) keep their
meaning, so code written for ``luxonis_ml.telemetry`` runs unchanged.
"""

from __future__ import annotations

import os
import sys

from ._fs import read_regular
from .config import IS_LUXONIS_CLOUD, is_ci, parse_bool

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = [
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
]

RESERVED_METADATA_KEYS = frozenset(
    {"$process_person_profile", "$session_id", "source_product", "source_component", "sdk_version"}
)
"""luxonis-ml's protected keys: providers may set them only with ``allow_reserved_overrides``."""

BASE_CONTEXT_KEYS = (
    "os",
    "os_version",
    "os_distro",
    "os_product_version",
    "python_version",
    "python_implementation",
    "library_name",
    "library_version",
    "session_id",
    "install_id",
    "ci",
    "source_component",
)
"""Our base context, as spooled; luxonis-ml's reserved keys are derived from it at upload."""


def is_luxonis_cloud() -> bool:
    """True when ``LUXONIS_TELEMETRY_IS_LUXONIS_CLOUD`` marks a Luxonis cloud job."""
    return bool(parse_bool(os.environ.get(IS_LUXONIS_CLOUD)))


def _uname() -> tuple[str, str, str]:
    """(system, release, machine) as ``platform`` reports them, without a subprocess."""
    if hasattr(os, "uname"):
        facts = os.uname()
        return facts.sysname, facts.release, facts.machine
    import platform  # pragma: no cover - Windows: these three never start a process there

    return platform.system(), platform.release(), platform.machine()


def _python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def normalized_processor() -> str:
    """A coarse processor family from the machine type (never the raw ``uname -p`` string).

    One of ``arm64``, ``arm``, ``x86_64``, ``x86``, ``powerpc``, ``riscv`` or
    ``unknown``, as in luxonis-ml.
    """
    machine = _uname()[2].lower()
    if not machine:
        machine = os.environ.get("PROCESSOR_ARCHITECTURE", "").lower()
    families = (
        (("aarch64", "arm64"), "arm64"),
        (("arm",), "arm"),
        (("x86_64", "amd64"), "x86_64"),
        (("x86", "i386", "i686"), "x86"),
        (("ppc", "powerpc"), "powerpc"),
        (("riscv",), "riscv"),
    )
    for tokens, family in families:
        if any(token in machine for token in tokens):
            return family
    return "unknown"


def host_context() -> dict[str, Any]:
    """Coarse host facts: ``os``, ``os_version``, ``arch``, ``python_version``."""
    system, release, machine = _uname()
    return {
        "os": system,
        "os_version": release,
        "arch": machine,
        "python_version": _python_version(),
    }


def _in_docker() -> bool:
    return os.path.exists("/.dockerenv")


def system_context() -> dict[str, Any]:
    """:func:`host_context` plus ``ci``, ``is_luxonis_cloud``, ``processor``, ``cpu_count``
    and ``is_docker``."""
    return {
        **host_context(),
        "ci": is_ci(),
        "is_luxonis_cloud": is_luxonis_cloud(),
        "processor": normalized_processor(),
        "cpu_count": os.cpu_count(),
        "is_docker": _in_docker(),
    }


def host_context_provider(_telemetry: object) -> dict[str, Any]:
    """A system context provider giving :func:`host_context`."""
    return host_context()


def system_context_provider(_telemetry: object) -> dict[str, Any]:
    """A system context provider giving :func:`system_context`."""
    return system_context()


def system_metadata() -> dict[str, Any]:
    """What ``include_system_metadata=True`` adds: luxonis-ml's system context and ours.

    Ours: container detection beyond Docker and the UTC offset in minutes
    (the Python implementation is in every event's base context). Nothing
    personal, no subprocess.
    """
    return {
        **system_context(),
        "container": _in_container(),
        "timezone_offset_minutes": _utc_offset_minutes(),
    }


def _python_implementation() -> str:
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython"}.get(name, name)


def _in_container() -> bool:
    if _in_docker() or os.path.exists("/run/.containerenv"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    try:
        with open("/proc/1/cgroup", encoding="utf-8", errors="replace") as handle:
            text = handle.read(65536)
    except OSError:
        return False
    return any(word in text for word in ("docker", "kubepods", "containerd", "lxc"))


def _utc_offset_minutes() -> int:
    import time

    local = time.localtime()
    return int((local.tm_gmtoff or 0) // 60)


def _os_product(system: str) -> tuple[Optional[str], Optional[str]]:
    """The distribution's name (Linux) and the OS version as its vendor numbers it.

    What the posthog client reports as ``$os_distro`` and ``$os_version``
    (Debian ``12``, macOS ``14.2``, Windows ``10``), where ``os_version`` is the
    kernel's release. Read from files, never by running a program.
    """
    if system == "Linux":
        fields = _os_release()
        return fields.get("NAME"), fields.get("VERSION_ID")
    if system == "Darwin":
        import platform

        return None, platform.mac_ver()[0] or None
    if system == "Windows":  # pragma: no cover - Windows
        import platform

        return None, platform.win32_ver()[0] or None
    return None, None


def _os_release() -> dict[str, str]:
    """``/etc/os-release`` (or ``/usr/lib/os-release``) as a dict; empty when unreadable."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        data = read_regular(path, 16 * 1024)
        if data is not None:
            break
    else:
        return {}
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("NAME", "VERSION_ID"):
            fields[key.strip()] = value.strip().strip("'\"")[:100]
    return fields


def spooled_context(
    *,
    library_name: str,
    library_version: Optional[str],
    session_id: str,
    install_id: Optional[str],
    source_component: str,
) -> dict[str, Any]:
    """The context of every event of one library in this process (cached by the client).

    Richer than luxonis-ml's base context, and kept in the spool in this
    form; `base_context`'s keys are derived from it when an event is sent.
    """
    system, release, _machine = _uname()
    distro, product_version = _os_product(system)
    return {
        "os": system,
        "os_version": release,
        "os_distro": distro,
        "os_product_version": product_version,
        "python_version": _python_version(),
        "python_implementation": _python_implementation(),
        "library_name": library_name,
        "library_version": library_version,
        "session_id": session_id,
        "install_id": install_id,
        "ci": is_ci(),
        "source_component": source_component,
    }


def base_context(
    *,
    library_name: str,
    library_version: Optional[str],
    session_id: str,
    source_component: Optional[str],
) -> dict[str, Any]:
    """luxonis-ml's base context: the keys its PostHog dashboards filter on.

    ``$process_person_profile`` is false so that PostHog creates no person
    profile: the events stay anonymous. Same signature and result as
    ``luxonis_ml.telemetry.context.base_context``.
    """
    return {
        "$process_person_profile": False,
        "$session_id": session_id,
        "source_product": library_name,
        "source_component": source_component or library_name,
        "sdk_version": library_version,
    }
