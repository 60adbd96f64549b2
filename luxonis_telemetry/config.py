"""Configuration: what the library asks for, what the user set, and who wins.

The user runs the machine, so anything the user set (environment, the
persisted ``enable``/``disable`` choice, CLI flags) beats what a library
passed in :class:`TelemetryConfig`, which beats the built-in defaults. An
opt-out from any user source always wins.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace

TYPE_CHECKING = False  # importing typing costs ~2 ms; type checkers know this name
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

__all__ = [
    "DEFAULT_ENDPOINT",
    "TelemetryConfig",
    "config_dir",
    "enabled_decision",
    "parse_bool",
    "persisted_choice",
    "settings_path",
    "spool_dir",
]

APP_NAME = "luxonis-telemetry"
DEFAULT_ENDPOINT = "https://us.i.posthog.com"
DEFAULT_MAX_SPOOL_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_EVENT_AGE_DAYS = 30.0

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})

ENV_PREFIX = "LUXONIS_TELEMETRY_"
ENABLED = ENV_PREFIX + "ENABLED"
BACKEND = ENV_PREFIX + "BACKEND"
API_KEY = ENV_PREFIX + "API_KEY"
ENDPOINT = ENV_PREFIX + "ENDPOINT"
DEBUG = ENV_PREFIX + "DEBUG"
INSTALL_ID_PATH = ENV_PREFIX + "INSTALL_ID_PATH"
DISTINCT_ID = ENV_PREFIX + "ID"
SPOOL_DIR = ENV_PREFIX + "SPOOL_DIR"
CONFIG_DIR = ENV_PREFIX + "CONFIG_DIR"
UPLOAD_ON_EXIT = ENV_PREFIX + "UPLOAD_ON_EXIT"
MAX_SPOOL_MB = ENV_PREFIX + "MAX_SPOOL_MB"
MAX_AGE_DAYS = ENV_PREFIX + "MAX_AGE_DAYS"
DO_NOT_TRACK = "DO_NOT_TRACK"


def parse_bool(value: Optional[str]) -> Optional[bool]:
    """``True``/``False`` for a recognised spelling, ``None`` otherwise."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUTHY:
        return True
    if text in _FALSY:
        return False
    return None


def _parse_positive(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if 0 < number < float("inf") else None


def _nonempty(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    text = value.strip()
    return text or None


@dataclass(frozen=True)
class TelemetryConfig:
    """What a library asks for; ``TelemetryConfig.from_env`` applies the user's say.

    ``backend=None`` means "not chosen": PostHog, or ``stdout`` in debug mode.
    """

    enabled: bool = True
    backend: Optional[str] = None
    api_key: Optional[str] = field(default=None, repr=False)
    endpoint: Optional[str] = None
    debug: bool = False
    install_id_path: Optional[str] = None
    distinct_id: Optional[str] = None
    spool_dir: Optional[str] = None
    upload_on_exit: bool = True
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    max_event_age_days: float = DEFAULT_MAX_EVENT_AGE_DAYS

    @property
    def effective_backend(self) -> str:
        if self.backend:
            return self.backend
        return "stdout" if self.debug else "posthog"

    @property
    def effective_endpoint(self) -> str:
        return self.endpoint or DEFAULT_ENDPOINT

    @classmethod
    def from_env(
        cls,
        base: Optional[TelemetryConfig] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> TelemetryConfig:
        """Layer the user's environment and persisted choice over ``base``.

        Unrecognised values are ignored (``ENABLED`` garbage means off), so a
        typo in a shell profile can never break an import.
        """
        env = os.environ if environ is None else environ
        config = base if base is not None else cls()
        enabled, _reason = enabled_decision(config.enabled, env)
        debug = parse_bool(env.get(DEBUG))
        backend = _nonempty(env.get(BACKEND))
        if backend is None and debug:
            backend = "stdout"
        upload_on_exit = parse_bool(env.get(UPLOAD_ON_EXIT))
        max_mb = _parse_positive(env.get(MAX_SPOOL_MB))
        max_age = _parse_positive(env.get(MAX_AGE_DAYS))
        return replace(
            config,
            enabled=enabled,
            backend=backend or config.backend,
            api_key=_nonempty(env.get(API_KEY)) or config.api_key,
            endpoint=_nonempty(env.get(ENDPOINT)) or config.endpoint,
            debug=config.debug if debug is None else debug,
            install_id_path=_nonempty(env.get(INSTALL_ID_PATH)) or config.install_id_path,
            distinct_id=_nonempty(env.get(DISTINCT_ID)) or config.distinct_id,
            spool_dir=_nonempty(env.get(SPOOL_DIR)) or config.spool_dir,
            upload_on_exit=config.upload_on_exit if upload_on_exit is None else upload_on_exit,
            max_spool_bytes=int(max_mb * 1024 * 1024) if max_mb else config.max_spool_bytes,
            max_event_age_days=max_age or config.max_event_age_days,
        )


def enabled_decision(library_enabled: bool, environ: Mapping[str, str]) -> tuple[bool, str]:
    """Whether telemetry is on, and the reason a person can act on."""
    if parse_bool(environ.get(DO_NOT_TRACK)):
        return False, "DO_NOT_TRACK is set"
    raw = _nonempty(environ.get(ENABLED))
    user_env = parse_bool(raw)
    if raw is not None and user_env is not True:
        return False, f"{ENABLED}={raw!r}"
    if persisted_choice(environ) is False:
        return False, f"disabled by `luxonis-telemetry disable` ({settings_path(environ)})"
    if user_env is True:
        return True, f"{ENABLED}={raw!r}"
    if not library_enabled:
        return False, "disabled by the library's TelemetryConfig(enabled=False)"
    return True, "default"


def config_dir(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Per-user config folder, or ``None`` when no home can be found."""
    env = os.environ if environ is None else environ
    override = _nonempty(env.get(CONFIG_DIR))
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return _user_dir("config", env)


def spool_dir(
    config: Optional[TelemetryConfig] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """Per-user spool folder shared by every library, or ``None`` without a home."""
    env = os.environ if environ is None else environ
    override = _nonempty(env.get(SPOOL_DIR)) or (config.spool_dir if config else None)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    path = _user_dir("state", env)
    return os.path.join(path, "spool") if path else None


_XDG = {"config": ("XDG_CONFIG_HOME", ".config"), "state": ("XDG_STATE_HOME", ".local/state")}


def _user_dir(kind: str, env: Mapping[str, str]) -> Optional[str]:
    """platformdirs' per-user folder; ``None`` when there is no usable home.

    On Linux and the BSDs this is the XDG rule platformdirs applies, written
    out: importing platformdirs costs ~8 ms (it loads pathlib), which every
    program that captures an event would pay.
    """
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        variable, fallback = _XDG[kind]
        base = (env.get(variable) or "").strip() or os.path.join(os.path.expanduser("~"), fallback)
        path = os.path.join(base, APP_NAME)
    else:
        import platformdirs

        if kind == "config":
            path = platformdirs.user_config_dir(APP_NAME, appauthor=False)
        else:
            path = platformdirs.user_state_dir(APP_NAME, appauthor=False)
    return path if os.path.isabs(path) else None


def settings_path(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    folder = config_dir(environ)
    return os.path.join(folder, "settings.json") if folder else None


def persisted_choice(environ: Optional[Mapping[str, str]] = None) -> Optional[bool]:
    """The user's ``enable``/``disable`` choice; an unreadable file means none."""
    path = settings_path(environ)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    value = data.get("enabled") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


CI_VARIABLES = (
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "TEAMCITY_VERSION",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ID",
)


def is_ci(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True on the common CI services: ``CI`` is truthy or one of ``CI_VARIABLES`` is set."""
    env = os.environ if environ is None else environ
    if parse_bool(env.get("CI")):
        return True
    return any(env.get(name) for name in CI_VARIABLES)


def running_under_test_or_ci(environ: Optional[Mapping[str, str]] = None) -> bool:
    env = os.environ if environ is None else environ
    return is_ci(env) or "PYTEST_CURRENT_TEST" in env or "pytest" in sys.modules
