"""Configuration: what the library asks for, what the user set, and who wins.

A library bakes its product defaults into :class:`TelemetryDefaults` (or a
whole :class:`TelemetryConfig`); :meth:`TelemetryConfig.from_environ` lays the
user's say on top: the environment, the persisted ``enable|local|disable``
choice and, for switching off only, a ``.env`` file in the working folder.
The user runs the machine, so the user's settings beat the library's, and
the most private choice from any source wins: off, then local (record,
never upload), then on.

Both classes are small frozen value objects rather than dataclasses:
``import dataclasses`` costs ~10 ms, which every Luxonis tool would pay at
start-up. They compare, hash and ``replace()`` like frozen dataclasses.
"""

from __future__ import annotations

import os
import sys

from . import _fs, _settings

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Optional, TypeVar

    _F = TypeVar("_F", bound="_Frozen")

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENV_VARIABLES",
    "Decision",
    "TelemetryConfig",
    "TelemetryDefaults",
    "config_dir",
    "decide_mode",
    "exit_budget",
    "ignored_settings",
    "install_id_path",
    "is_ci",
    "parse_bool",
    "read_dotenv",
    "running_under_test_or_ci",
    "settings_path",
    "spool_dir",
]

APP_NAME = "luxonis-telemetry"
DEFAULT_ENDPOINT = "https://us.i.posthog.com"
DEFAULT_MAX_SPOOL_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_EVENT_AGE_DAYS = 30.0
MAX_SPOOL_MB_LIMIT = 1024 * 1024  # 1 TiB: anything larger is a typo
MAX_AGE_DAYS_LIMIT = 3650.0
EXIT_TIMEOUT_LIMIT = 20.0  # with the helper's 10 s grace: gone within 30 s, whatever happens

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
EXIT_TIMEOUT = ENV_PREFIX + "EXIT_TIMEOUT"
IS_LUXONIS_CLOUD = ENV_PREFIX + "IS_LUXONIS_CLOUD"
DO_NOT_TRACK = "DO_NOT_TRACK"
ENV_VARIABLES = (
    ENABLED,
    BACKEND,
    API_KEY,
    ENDPOINT,
    DEBUG,
    INSTALL_ID_PATH,
    DISTINCT_ID,
    SPOOL_DIR,
    CONFIG_DIR,
    UPLOAD_ON_EXIT,
    MAX_SPOOL_MB,
    MAX_AGE_DAYS,
    EXIT_TIMEOUT,
    IS_LUXONIS_CLOUD,
    DO_NOT_TRACK,
)

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})
_LOCAL = "local"


def parse_bool(value: Optional[str]) -> Optional[bool]:
    """``True``/``False`` for a recognised spelling (any case, trimmed), ``None`` otherwise."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUTHY:
        return True
    if text in _FALSY:
        return False
    return None


def _nonempty(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    text = value.strip()
    return text or None


def _bounded(value: Optional[str], limit: float) -> Optional[float]:
    """A positive number up to ``limit``; anything else (garbage, inf, 1e400) is ignored."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if 0 < number <= limit else None


def _absolute(value: Optional[str]) -> Optional[str]:
    """An absolute folder or file setting (``~`` expanded); relative ones are refused.

    A relative path would put the user's files wherever a program happens to
    be started.
    """
    text = _nonempty(value)
    if text is None or "\0" in text:
        return None
    path = os.path.expanduser(text)
    return os.path.normpath(path) if os.path.isabs(path) else None


class _Frozen:
    """Equality, hashing, ``repr`` and ``replace`` from ``_FIELDS``; assignment refused."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()
    _HIDDEN: frozenset[str] = frozenset({"api_key"})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        shown = (
            f"{name}={'***' if name in self._HIDDEN and value else repr(value)}"
            for name, value in zip(self._FIELDS, self._values(), strict=True)
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    def replace(self: _F, **changes: Any) -> _F:
        """A copy with ``changes`` applied (as ``dataclasses.replace`` does)."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"unknown field(s): {', '.join(sorted(unknown))}")
        values = dict(zip(self._FIELDS, self._values(), strict=True))
        values.update(changes)
        return type(self)(**values)

    __replace__ = replace

    # Pickling and ``copy`` restore slots with ``setattr``, which a frozen
    # object refuses; a config crosses process boundaries (multiprocessing
    # "spawn") and gets copied, as a frozen dataclass would.
    def __getstate__(self) -> dict[str, Any]:
        return dict(zip(self._FIELDS, self._values(), strict=True))

    def __setstate__(self, values: dict[str, Any]) -> None:
        self._set(**{name: values.get(name) for name in self._FIELDS})

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


def _allowlist(value: Optional[Iterable[str]]) -> Optional[frozenset[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(str(item) for item in value)


class TelemetryDefaults(_Frozen):
    """A product's baked-in defaults; every field optional (``None``: the built-in default).

    Pass to :meth:`TelemetryConfig.from_environ` so the user's environment and
    choices still win. ``product_name`` and ``privacy_url`` personalise the
    one-time notice people see on their terminal.
    """

    _FIELDS = (
        "enabled",
        "backend",
        "api_key",
        "endpoint",
        "debug",
        "allowlist",
        "include_base_context",
        "include_system_metadata",
        "disable_geoip",
        "allow_reserved_overrides",
        "upload_on_exit",
        "product_name",
        "privacy_url",
    )
    __slots__ = _FIELDS

    enabled: Optional[bool]
    backend: Optional[str]
    api_key: Optional[str]
    endpoint: Optional[str]
    debug: Optional[bool]
    allowlist: Optional[frozenset[str]]
    include_base_context: Optional[bool]
    include_system_metadata: Optional[bool]
    disable_geoip: Optional[bool]
    allow_reserved_overrides: Optional[bool]
    upload_on_exit: Optional[bool]
    product_name: Optional[str]
    privacy_url: Optional[str]

    def __init__(
        self,
        enabled: Optional[bool] = None,
        backend: Optional[str] = None,
        api_key: Optional[str] = None,
        endpoint: Optional[str] = None,
        debug: Optional[bool] = None,
        allowlist: Optional[Iterable[str]] = None,
        include_base_context: Optional[bool] = None,
        include_system_metadata: Optional[bool] = None,
        disable_geoip: Optional[bool] = None,
        allow_reserved_overrides: Optional[bool] = None,
        upload_on_exit: Optional[bool] = None,
        product_name: Optional[str] = None,
        privacy_url: Optional[str] = None,
    ) -> None:
        self._set(
            enabled=enabled,
            backend=backend,
            api_key=api_key,
            endpoint=endpoint,
            debug=debug,
            allowlist=_allowlist(allowlist),
            include_base_context=include_base_context,
            include_system_metadata=include_system_metadata,
            disable_geoip=disable_geoip,
            allow_reserved_overrides=allow_reserved_overrides,
            upload_on_exit=upload_on_exit,
            product_name=product_name,
            privacy_url=privacy_url,
        )


class TelemetryConfig(_Frozen):
    """How one library records: luxonis-ml's fields plus ours; ``repr`` hides the key.

    ``TelemetryConfig(...)`` is what a library asks for; ``Telemetry`` always
    applies :meth:`from_environ` to it, so what the user set wins. ``local``
    (record, never upload) is the user's mode, set by ``from_environ``.
    GeoIP enrichment is off by default here (``disable_geoip=False`` turns it
    on), unlike luxonis-ml.
    """

    _FIELDS = (
        "enabled",
        "backend",
        "api_key",
        "endpoint",
        "debug",
        "allowlist",
        "include_base_context",
        "include_system_metadata",
        "disable_geoip",
        "allow_reserved_overrides",
        "local",
        "install_id_path",
        "distinct_id",
        "spool_dir",
        "upload_on_exit",
        "max_spool_bytes",
        "max_event_age_days",
        "product_name",
        "privacy_url",
    )
    __slots__ = _FIELDS

    enabled: bool
    backend: str
    api_key: Optional[str]
    endpoint: Optional[str]
    debug: bool
    allowlist: Optional[frozenset[str]]
    include_base_context: bool
    include_system_metadata: bool
    disable_geoip: bool
    allow_reserved_overrides: bool
    local: bool
    install_id_path: Optional[str]
    distinct_id: Optional[str]
    spool_dir: Optional[str]
    upload_on_exit: bool
    max_spool_bytes: int
    max_event_age_days: float
    product_name: Optional[str]
    privacy_url: Optional[str]

    def __init__(
        self,
        enabled: bool = True,
        backend: str = "posthog",
        api_key: Optional[str] = None,
        endpoint: Optional[str] = None,
        debug: bool = False,
        allowlist: Optional[Iterable[str]] = None,
        include_base_context: bool = True,
        include_system_metadata: bool = False,
        disable_geoip: bool = True,
        allow_reserved_overrides: bool = False,
        local: bool = False,
        install_id_path: Optional[str] = None,
        distinct_id: Optional[str] = None,
        spool_dir: Optional[str] = None,
        upload_on_exit: bool = True,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        max_event_age_days: float = DEFAULT_MAX_EVENT_AGE_DAYS,
        product_name: Optional[str] = None,
        privacy_url: Optional[str] = None,
    ) -> None:
        self._set(
            enabled=bool(enabled),
            backend=str(backend or "posthog"),
            api_key=api_key or None,
            endpoint=endpoint or None,
            debug=bool(debug),
            allowlist=_allowlist(allowlist),
            include_base_context=bool(include_base_context),
            include_system_metadata=bool(include_system_metadata),
            disable_geoip=bool(disable_geoip),
            allow_reserved_overrides=bool(allow_reserved_overrides),
            local=bool(local),
            install_id_path=install_id_path,
            distinct_id=distinct_id,
            spool_dir=spool_dir,
            upload_on_exit=bool(upload_on_exit),
            max_spool_bytes=int(max_spool_bytes),
            max_event_age_days=float(max_event_age_days),
            product_name=product_name,
            privacy_url=privacy_url,
        )

    @property
    def effective_backend(self) -> str:
        """The backend's registry name (names ignore case, as in luxonis-ml)."""
        return self.backend.strip().lower() or "posthog"

    @property
    def effective_endpoint(self) -> str:
        return self.endpoint or DEFAULT_ENDPOINT

    @property
    def mode(self) -> str:
        """``on``, ``local`` (record, never upload) or ``off``."""
        if not self.enabled:
            return "off"
        return _LOCAL if self.local else "on"

    @classmethod
    def from_environ(
        cls,
        defaults: Optional[TelemetryDefaults | TelemetryConfig] = None,
        *,
        environ: Optional[Mapping[str, str]] = None,
    ) -> TelemetryConfig:
        """The configuration in force: the user's environment and choices over ``defaults``.

        ``defaults`` is a product's :class:`TelemetryDefaults`, or a whole
        :class:`TelemetryConfig` a library passed. Precedence, per setting:
        environment, then ``defaults``, then built-in (the backend falls back
        to ``stdout`` when debug is on). The user's off and local choices win
        over any library setting. Unrecognised values are ignored (garbage in
        ``..._ENABLED`` means off), so a typo in a shell profile never breaks
        an import.
        """
        env = os.environ if environ is None else environ
        given = defaults if defaults is not None else TelemetryDefaults()
        library_mode = "off" if given.enabled is False else "on"
        decision = decide_mode(library_mode, env, read_dotenv() if environ is None else {})
        debug = parse_bool(env.get(DEBUG))
        if debug is None:
            debug = bool(given.debug)
        backend = _nonempty(env.get(BACKEND))
        if backend is None and parse_bool(env.get(DEBUG)):
            backend = "stdout"
        backend = backend or given.backend or ("stdout" if debug else "posthog")
        upload_on_exit = parse_bool(env.get(UPLOAD_ON_EXIT))
        if upload_on_exit is None:
            upload_on_exit = given.upload_on_exit is not False
        max_mb = _bounded(env.get(MAX_SPOOL_MB), MAX_SPOOL_MB_LIMIT)
        max_bytes = int(max_mb * 1024 * 1024) if max_mb else 0  # below one byte: ignored
        max_age = _bounded(env.get(MAX_AGE_DAYS), MAX_AGE_DAYS_LIMIT)
        library = given if isinstance(given, TelemetryConfig) else None
        return cls(
            enabled=decision.mode != "off",
            backend=backend,
            api_key=_nonempty(env.get(API_KEY)) or given.api_key,
            endpoint=_nonempty(env.get(ENDPOINT)) or given.endpoint,
            debug=debug,
            allowlist=given.allowlist,
            include_base_context=_pick(given.include_base_context, True),
            include_system_metadata=_pick(given.include_system_metadata, False),
            disable_geoip=_pick(given.disable_geoip, True),
            allow_reserved_overrides=_pick(given.allow_reserved_overrides, False),
            local=decision.mode == _LOCAL,
            install_id_path=_absolute(env.get(INSTALL_ID_PATH))
            or _absolute(library.install_id_path if library else None),
            distinct_id=_nonempty(env.get(DISTINCT_ID))
            or (library.distinct_id if library else None),
            spool_dir=_absolute(env.get(SPOOL_DIR))
            or _absolute(library.spool_dir if library else None),
            upload_on_exit=upload_on_exit,
            max_spool_bytes=max_bytes
            or (library.max_spool_bytes if library else DEFAULT_MAX_SPOOL_BYTES),
            max_event_age_days=max_age
            or (library.max_event_age_days if library else DEFAULT_MAX_EVENT_AGE_DAYS),
            product_name=given.product_name,
            privacy_url=given.privacy_url,
        )


def _pick(value: Optional[bool], default: bool) -> bool:
    return default if value is None else bool(value)


class Decision:
    """Whether telemetry records and uploads here, and the reason a person can act on."""

    __slots__ = ("mode", "problem", "reason", "source")

    def __init__(self, mode: str, reason: str, source: str, problem: Optional[str] = None) -> None:
        self.mode = mode
        self.reason = reason
        self.source = source
        self.problem = problem

    def __repr__(self) -> str:
        return f"Decision({self.mode!r}, {self.reason!r})"


def decide_mode(
    library_mode: str,
    environ: Mapping[str, str],
    dotenv: Optional[Mapping[str, str]] = None,
) -> Decision:
    """The mode in force and why: the most private of the user's choices, then the library's.

    ``library_mode`` is what the library configured (``on`` or ``off``): local
    mode is the user's to choose, since only the user's choice is seen by
    every path that uploads (the CLI, the exit hook, other tools). An explicit
    ``LUXONIS_TELEMETRY_ENABLED=1`` overrides a library that turned telemetry
    off; a stored ``enable`` only undoes ``disable``.
    """
    dotenv = dotenv or {}
    if parse_bool(environ.get(DO_NOT_TRACK)):
        return Decision("off", "DO_NOT_TRACK is set", "environment")
    raw = _nonempty(environ.get(ENABLED))
    env_choice = _choice(raw)
    if env_choice == "off":
        return Decision("off", _off_reason(raw), "environment")
    if parse_bool(dotenv.get(DO_NOT_TRACK)):
        return Decision("off", "DO_NOT_TRACK is set in ./.env", "dotenv")
    dot_raw = _nonempty(dotenv.get(ENABLED))
    dot_choice = _choice(dot_raw)
    if dot_choice == "off":
        return Decision("off", f"{_off_reason(dot_raw)} in ./.env", "dotenv")
    folder = config_dir(environ)
    stored = _settings.read_mode(folder) if folder else None
    problem = stored.problem if stored is not None else None
    if stored is not None and stored.mode == "off":
        reason = problem or f"disabled by `luxonis-telemetry disable` ({stored.path})"
        return Decision("off", reason, "settings", problem)
    if env_choice == _LOCAL:
        return Decision(_LOCAL, f"{ENABLED}={raw!r}", "environment", problem)
    if dot_choice == _LOCAL:
        return Decision(_LOCAL, f"{ENABLED}={dot_raw!r} in ./.env", "dotenv", problem)
    if stored is not None and stored.mode == _LOCAL:
        reason = problem or f"set by `luxonis-telemetry local` ({stored.path})"
        return Decision(_LOCAL, reason, "settings", problem)
    if env_choice == "on":
        return Decision("on", f"{ENABLED}={raw!r}", "environment", problem)
    if library_mode == "off":
        return Decision("off", "turned off by the library's configuration", "library", problem)
    if stored is not None and stored.mode == "on":
        return Decision("on", f"set by `luxonis-telemetry enable` ({stored.path})", "settings")
    return Decision("on", "default", "default", problem)


def _off_reason(raw: Optional[str]) -> str:
    if parse_bool(raw) is None:
        return f"{ENABLED}={raw!r} is not one of 1/0/true/false/yes/no/on/off/local"
    return f"{ENABLED}={raw!r}"


def _choice(raw: Optional[str]) -> Optional[str]:
    """``on``/``local``/``off`` for an ``..._ENABLED`` value; unrecognised means off."""
    if raw is None:
        return None
    if raw.strip().lower() == _LOCAL:
        return _LOCAL
    return "on" if parse_bool(raw) else "off"


_DOTENV_KEYS = (ENABLED, DO_NOT_TRACK)


def read_dotenv(folder: Optional[str] = None) -> dict[str, str]:
    """The opt-out switches of ``./.env`` (luxonis-ml reads that file too).

    Only ``LUXONIS_TELEMETRY_ENABLED`` and ``DO_NOT_TRACK`` are taken, and
    :func:`decide_mode` lets them only make telemetry more private: a cloned
    repository must never redirect a user's events or turn telemetry on.
    """
    try:
        path = os.path.join(folder or os.getcwd(), ".env")
    except OSError:
        return {}
    data = _fs.read_regular(path, 64 * 1024)
    if not data:
        return {}
    found: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        key = key.strip()
        if sep and key in _DOTENV_KEYS:
            found[key] = value.split(" #", 1)[0].strip().strip("'\"")
    return found


def config_dir(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Per-user config folder, or ``None`` when no home can be found."""
    env = os.environ if environ is None else environ
    return _absolute(env.get(CONFIG_DIR)) or _user_dir("config", env)


def settings_path(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Where the ``enable|local|disable`` choice is stored."""
    folder = config_dir(environ)
    return os.path.join(folder, _settings.SETTINGS_FILE) if folder else None


def install_id_path(
    config: Optional[TelemetryConfig] = None, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """Where the anonymous install id lives (``None``: no home, an id for this process only)."""
    chosen = _absolute(config.install_id_path) if config is not None else None
    if chosen:
        return chosen
    env = os.environ if environ is None else environ
    explicit = _absolute(env.get(INSTALL_ID_PATH))
    if explicit:
        return explicit
    folder = config_dir(env)
    return os.path.join(folder, "install_id") if folder else None


def spool_dir(
    config: Optional[TelemetryConfig] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """Per-user spool folder shared by every library, or ``None`` without a home."""
    env = os.environ if environ is None else environ
    override = _absolute(env.get(SPOOL_DIR)) or _absolute(config.spool_dir if config else None)
    if override:
        return override
    path = _user_dir("state", env)
    return os.path.join(path, "spool") if path else None


def exit_budget(default: float, environ: Optional[Mapping[str, str]] = None) -> float:
    """Seconds the exit helper may spend (``LUXONIS_TELEMETRY_EXIT_TIMEOUT``, at most 20)."""
    env = os.environ if environ is None else environ
    return _bounded(env.get(EXIT_TIMEOUT), EXIT_TIMEOUT_LIMIT) or default


def ignored_settings(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """Settings that were ignored, each with why (for ``status``).

    Relative folders (they would put files wherever a program starts) and
    numbers that are not a positive size or age within reason (a typo such
    as ``1e400`` must neither break an import nor go unnoticed).
    """
    env = os.environ if environ is None else environ
    names = [SPOOL_DIR, CONFIG_DIR, INSTALL_ID_PATH]
    if _uses_xdg():
        names += [variable for variable, _fallback in _XDG.values()]
    found = [
        f"{name}={env[name]!r} is not an absolute path: ignored"
        for name in names
        if _nonempty(env.get(name)) and _absolute(env.get(name)) is None
    ]
    for name, limit, unit in (
        (MAX_SPOOL_MB, MAX_SPOOL_MB_LIMIT, "MiB"),
        (MAX_AGE_DAYS, MAX_AGE_DAYS_LIMIT, "days"),
        (EXIT_TIMEOUT, EXIT_TIMEOUT_LIMIT, "seconds"),
    ):
        raw = _nonempty(env.get(name))
        if raw is not None and _bounded(raw, limit) is None:
            found.append(f"{name}={raw!r} is not a number of {unit} up to {limit:g}: ignored")
    return found


_XDG = {"config": ("XDG_CONFIG_HOME", ".config"), "state": ("XDG_STATE_HOME", ".local/state")}


def _uses_xdg() -> bool:
    return sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def _user_dir(kind: str, env: Mapping[str, str]) -> Optional[str]:
    """platformdirs' per-user folder; ``None`` when there is no usable home.

    On Linux and the BSDs this is the XDG rule platformdirs applies, written
    out: importing platformdirs costs ~8 ms (it loads pathlib), which every
    program that captures an event would pay.
    """
    if _uses_xdg():
        variable, fallback = _XDG[kind]
        base = _absolute(env.get(variable)) or os.path.join(os.path.expanduser("~"), fallback)
        path = os.path.join(base, APP_NAME)
    else:
        import platformdirs

        if kind == "config":
            path = platformdirs.user_config_dir(APP_NAME, appauthor=False)
        else:
            path = platformdirs.user_state_dir(APP_NAME, appauthor=False)
    return path if os.path.isabs(path) else None


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
    """True on the common CI services: ``CI`` or one of ``CI_VARIABLES`` is set.

    As in luxonis-ml any value counts (Woodpecker sets ``CI=woodpecker``),
    except an explicit falsy ``CI=false``/``0``, which people set to say "not CI".
    """
    env = os.environ if environ is None else environ
    ci = _nonempty(env.get("CI"))
    if ci is not None and parse_bool(ci) is not False:
        return True
    return any(_nonempty(env.get(name)) for name in CI_VARIABLES)


def running_under_test_or_ci(environ: Optional[Mapping[str, str]] = None) -> bool:
    """No exit helper is started here unless asked: test runs and CI jobs keep their events."""
    env = os.environ if environ is None else environ
    return is_ci(env) or "PYTEST_CURRENT_TEST" in env or "pytest" in sys.modules
