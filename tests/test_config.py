"""Configuration: luxonis-ml's precedence, the user's most private choice, ./.env, folders."""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from luxonis_telemetry import Telemetry
from luxonis_telemetry.config import (
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_EVENT_AGE_DAYS,
    DEFAULT_MAX_SPOOL_BYTES,
    TelemetryConfig,
    TelemetryDefaults,
    config_dir,
    decide_mode,
    exit_budget,
    ignored_settings,
    install_id_path,
    is_ci,
    parse_bool,
    read_dotenv,
    settings_path,
    spool_dir,
)
from tests.conftest import run_python, spool_records

LUXONIS_ML_FIELDS = (
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
)


def write_settings(home: Path, content: str) -> Path:
    folder = home / ".config" / "luxonis-telemetry"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "settings.json"
    path.write_text(content)
    return path


def stored(home: Path, mode: str) -> None:
    write_settings(home, json.dumps({"v": 1, "mode": mode}))


# -- parse_bool ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        (" TRUE ", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        (" no", False),
        ("OFF", False),
        ("maybe", None),
        ("local", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_bool(raw: str | None, expected: bool | None) -> None:
    assert parse_bool(raw) is expected


# -- the value classes -------------------------------------------------------------


def test_defaults_are_all_optional_in_luxonis_mls_order() -> None:
    defaults = TelemetryDefaults()
    assert all(getattr(defaults, name) is None for name in TelemetryDefaults._FIELDS)
    positional = TelemetryDefaults(True, "stdout", "k", "https://e", True, {"a"})
    assert positional.enabled is True
    assert positional.backend == "stdout"
    assert positional.api_key == "k"
    assert positional.endpoint == "https://e"
    assert positional.debug is True
    assert positional.allowlist == frozenset({"a"})
    assert TelemetryDefaults._FIELDS[: len(LUXONIS_ML_FIELDS)] == LUXONIS_ML_FIELDS
    assert TelemetryConfig._FIELDS[: len(LUXONIS_ML_FIELDS)] == LUXONIS_ML_FIELDS


def test_config_built_in_values() -> None:
    config = TelemetryConfig()
    assert config.enabled is True
    assert config.backend == "posthog"
    assert config.api_key is None
    assert config.endpoint is None
    assert config.effective_endpoint == DEFAULT_ENDPOINT
    assert config.debug is False
    assert config.allowlist is None
    assert config.include_base_context is True
    assert config.include_system_metadata is False
    assert config.disable_geoip is True  # ours: GeoIP off unless a library turns it on
    assert config.allow_reserved_overrides is False
    assert config.local is False
    assert config.mode == "on"
    assert config.upload_on_exit is True
    assert config.max_spool_bytes == DEFAULT_MAX_SPOOL_BYTES
    assert config.max_event_age_days == DEFAULT_MAX_EVENT_AGE_DAYS


@pytest.mark.parametrize("cls", [TelemetryConfig, TelemetryDefaults])
def test_frozen(cls: type[Any]) -> None:
    value = cls(api_key="phc_secret")
    with pytest.raises(AttributeError, match="frozen"):
        value.enabled = False
    with pytest.raises(AttributeError, match="frozen"):
        del value.api_key
    with pytest.raises(AttributeError):
        value.new_field = 1
    assert value.api_key == "phc_secret"


@pytest.mark.parametrize("cls", [TelemetryConfig, TelemetryDefaults])
def test_equality_hash_and_a_repr_that_hides_the_key(cls: type[Any]) -> None:
    one = cls(api_key="phc_secret", endpoint="https://e", allowlist=["a", "b"])
    two = cls(api_key="phc_secret", endpoint="https://e", allowlist={"b", "a"})
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != cls(api_key="phc_other", endpoint="https://e", allowlist=["a", "b"])
    assert one != object()
    text = repr(one)
    assert "phc_secret" not in text
    assert "api_key=***" in text
    assert "endpoint='https://e'" in text
    assert "api_key=None" in repr(cls())


def test_a_config_never_equals_defaults_with_the_same_values() -> None:
    assert TelemetryConfig(api_key="k") != TelemetryDefaults(api_key="k")


@pytest.mark.parametrize("cls", [TelemetryConfig, TelemetryDefaults])
def test_replace(cls: type[Any]) -> None:
    base = cls(api_key="k", endpoint="https://a")
    changed = base.replace(endpoint="https://b", allowlist=["x"])
    assert changed.endpoint == "https://b"
    assert changed.api_key == "k"
    assert changed.allowlist == frozenset({"x"})
    assert base.endpoint == "https://a"
    assert type(changed) is cls
    assert base.__replace__(endpoint="https://c").endpoint == "https://c"
    with pytest.raises(TypeError, match="unknown field"):
        base.replace(colour="red")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        (["a", "b", "a"], frozenset({"a", "b"})),
        ({"a"}, frozenset({"a"})),
        (("a",), frozenset({"a"})),
        ("name", frozenset({"name"})),  # a lone string is one name, not its letters
        (frozenset({"x"}), frozenset({"x"})),
        ((n for n in ("g",)), frozenset({"g"})),
    ],
)
def test_allowlist_is_normalised_to_a_frozenset(given: Any, expected: Any) -> None:
    assert TelemetryConfig(allowlist=given).allowlist == expected
    if not hasattr(given, "__next__"):
        assert TelemetryDefaults(allowlist=given).allowlist == expected


@pytest.mark.parametrize("cls", [TelemetryConfig, TelemetryDefaults])
def test_copy_and_pickle(cls: type[Any]) -> None:
    value = cls(api_key="k", endpoint="https://e", allowlist=["a"])
    for clone in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):  # noqa: S301 - our own bytes
        assert clone == value
        assert type(clone) is cls
        with pytest.raises(AttributeError):
            clone.api_key = "other"


def test_backend_names_ignore_case() -> None:
    assert TelemetryConfig(backend=" PostHog ").effective_backend == "posthog"
    assert TelemetryConfig(backend="").backend == "posthog"


# -- from_environ: luxonis-ml's precedence ----------------------------------------


def test_from_environ_without_anything_gives_the_built_in_config() -> None:
    assert TelemetryConfig.from_environ(environ={}) == TelemetryConfig()
    assert TelemetryConfig.from_environ(TelemetryDefaults(), environ={}) == TelemetryConfig()


def test_environment_beats_defaults_beat_built_in() -> None:
    defaults = TelemetryDefaults(
        backend="stdout", api_key="lib_key", endpoint="https://lib.example", debug=False
    )
    from_defaults = TelemetryConfig.from_environ(defaults, environ={})
    assert from_defaults.backend == "stdout"
    assert from_defaults.api_key == "lib_key"
    assert from_defaults.endpoint == "https://lib.example"
    env = {
        "LUXONIS_TELEMETRY_BACKEND": "noop",
        "LUXONIS_TELEMETRY_API_KEY": "user_key",
        "LUXONIS_TELEMETRY_ENDPOINT": "https://company.example",
    }
    from_env = TelemetryConfig.from_environ(defaults, environ=env)
    assert from_env.backend == "noop"
    assert from_env.api_key == "user_key"
    assert from_env.endpoint == "https://company.example"


def test_blank_environment_values_count_as_unset() -> None:
    defaults = TelemetryDefaults(api_key="lib_key", endpoint="https://lib.example")
    env = {"LUXONIS_TELEMETRY_API_KEY": "  ", "LUXONIS_TELEMETRY_ENDPOINT": ""}
    config = TelemetryConfig.from_environ(defaults, environ=env)
    assert config.api_key == "lib_key"
    assert config.endpoint == "https://lib.example"


def test_every_luxonis_ml_field_comes_from_the_defaults() -> None:
    defaults = TelemetryDefaults(
        allowlist={"model"},
        include_base_context=False,
        include_system_metadata=True,
        disable_geoip=False,
        allow_reserved_overrides=True,
        upload_on_exit=False,
        product_name="HubAI",
        privacy_url="https://example.com/privacy",
    )
    config = TelemetryConfig.from_environ(defaults, environ={})
    assert config.allowlist == frozenset({"model"})
    assert config.include_base_context is False
    assert config.include_system_metadata is True
    assert config.disable_geoip is False
    assert config.allow_reserved_overrides is True
    assert config.upload_on_exit is False
    assert config.product_name == "HubAI"
    assert config.privacy_url == "https://example.com/privacy"


@pytest.mark.parametrize(
    ("defaults", "env", "backend", "debug"),
    [
        # luxonis-ml: without a backend anywhere, debug chooses stdout
        (TelemetryDefaults(debug=True), {}, "stdout", True),
        (TelemetryDefaults(), {"LUXONIS_TELEMETRY_DEBUG": "1"}, "stdout", True),
        # a backend the library names wins over its own debug default
        (TelemetryDefaults(debug=True, backend="posthog"), {}, "posthog", True),
        # the user's debug switch means "print, send nothing" (README, SPEC) ...
        (TelemetryDefaults(backend="posthog"), {"LUXONIS_TELEMETRY_DEBUG": "yes"}, "stdout", True),
        # ... unless the user names a backend too
        (
            TelemetryDefaults(),
            {"LUXONIS_TELEMETRY_DEBUG": "1", "LUXONIS_TELEMETRY_BACKEND": "noop"},
            "noop",
            True,
        ),
        # the environment's debug=off beats the library's debug=on
        (TelemetryDefaults(debug=True), {"LUXONIS_TELEMETRY_DEBUG": "0"}, "posthog", False),
        # garbage is ignored, the library's value stands
        (TelemetryDefaults(debug=True), {"LUXONIS_TELEMETRY_DEBUG": "sure"}, "stdout", True),
        (TelemetryDefaults(), {}, "posthog", False),
    ],
)
def test_debug_and_the_backend(
    defaults: TelemetryDefaults, env: dict[str, str], backend: str, debug: bool
) -> None:
    config = TelemetryConfig.from_environ(defaults, environ=env)
    assert config.backend == backend
    assert config.debug is debug


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, True), ({"LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "off"}, False)],
)
def test_upload_on_exit_from_the_environment(env: dict[str, str], expected: bool) -> None:
    assert TelemetryConfig.from_environ(environ=env).upload_on_exit is expected
    library = TelemetryDefaults(upload_on_exit=False)
    env_says = parse_bool(env.get("LUXONIS_TELEMETRY_UPLOAD_ON_EXIT"))
    assert TelemetryConfig.from_environ(library, environ=env).upload_on_exit is (
        env_says if env_says is not None else False
    )


def test_the_users_folders_and_ids_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "LUXONIS_TELEMETRY_ID": "me",
        "LUXONIS_TELEMETRY_SPOOL_DIR": str(tmp_path / "spool"),
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH": str(tmp_path / "id"),
        "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "2",
        "LUXONIS_TELEMETRY_MAX_AGE_DAYS": "3.5",
    }
    config = TelemetryConfig.from_environ(environ=env)
    assert config.distinct_id == "me"
    assert config.spool_dir == str(tmp_path / "spool")
    assert config.install_id_path == str(tmp_path / "id")
    assert config.max_spool_bytes == 2 * 1024 * 1024
    assert config.max_event_age_days == 3.5


def test_home_is_expanded_in_folder_settings(home: Path) -> None:
    env = {"LUXONIS_TELEMETRY_SPOOL_DIR": "~/spool"}
    assert TelemetryConfig.from_environ(environ=env).spool_dir == str(home / "spool")
    assert spool_dir(environ=env) == str(home / "spool")


# -- a TelemetryConfig as the defaults (what Telemetry(config=...) does) -----------


def test_a_whole_config_as_defaults_keeps_the_librarys_values(tmp_path: Path) -> None:
    library = TelemetryConfig(
        backend="stdout",
        api_key="lib_key",
        endpoint="https://lib.example",
        spool_dir=str(tmp_path / "lib_spool"),
        install_id_path=str(tmp_path / "lib_id"),
        distinct_id="lib_user",
        max_spool_bytes=1234,
        max_event_age_days=2.0,
        include_system_metadata=True,
        allowlist=["a"],
    )
    config = TelemetryConfig.from_environ(library, environ={})
    assert config == library


def test_the_environment_wins_over_a_whole_config(tmp_path: Path) -> None:
    library = TelemetryConfig(
        api_key="lib_key", spool_dir=str(tmp_path / "lib"), max_spool_bytes=1234
    )
    env = {
        "LUXONIS_TELEMETRY_API_KEY": "user_key",
        "LUXONIS_TELEMETRY_SPOOL_DIR": str(tmp_path / "user"),
        "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "1",
    }
    config = TelemetryConfig.from_environ(library, environ=env)
    assert config.api_key == "user_key"
    assert config.spool_dir == str(tmp_path / "user")
    assert config.max_spool_bytes == 1024 * 1024


@pytest.mark.parametrize(
    "library",
    [
        TelemetryConfig(),
        TelemetryConfig(enabled=False),
        TelemetryConfig(local=True),
        TelemetryConfig(debug=True, backend="stdout", api_key="k"),
        TelemetryDefaults(),
        TelemetryDefaults(enabled=False, debug=True),
        TelemetryDefaults(backend="Noop", allowlist=["x"], disable_geoip=False),
    ],
)
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LUXONIS_TELEMETRY_ENABLED": "1"},
        {"LUXONIS_TELEMETRY_ENABLED": "local"},
        {"LUXONIS_TELEMETRY_ENABLED": "garbage"},
        {"DO_NOT_TRACK": "1"},
        {"LUXONIS_TELEMETRY_DEBUG": "1", "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "3"},
        {"LUXONIS_TELEMETRY_BACKEND": "stdout", "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "0"},
    ],
)
@pytest.mark.parametrize("settings", [None, "on", "local", "off"])
def test_from_environ_is_idempotent(
    library: TelemetryConfig | TelemetryDefaults,
    env: dict[str, str],
    settings: str | None,
    home: Path,
) -> None:
    """``Telemetry(config=TelemetryConfig.from_environ(...))`` applies it twice: same result."""
    if settings is not None:
        stored(home, settings)
    once = TelemetryConfig.from_environ(library, environ=env)
    assert TelemetryConfig.from_environ(once, environ=env) == once


# -- the mode: the user's most private choice wins -----------------------------------


@pytest.mark.parametrize(
    ("library", "env", "settings", "mode"),
    [
        # the built-in default, and each single switch
        ("on", {}, None, "on"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "0"}, None, "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "local"}, None, "local"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": " LOCAL "}, None, "local"),
        ("on", {"DO_NOT_TRACK": "1"}, None, "off"),
        ("on", {"DO_NOT_TRACK": "true"}, None, "off"),
        ("on", {"DO_NOT_TRACK": "0"}, None, "on"),
        ("on", {}, "off", "off"),
        ("on", {}, "local", "local"),
        # garbage in ENABLED means off, never an exception
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "maybe"}, None, "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "2"}, None, "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": ""}, None, "on"),
        # off > local > on, whoever says it
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "1"}, "off", "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "1"}, "local", "local"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "local"}, "off", "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "0"}, "local", "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "0"}, "on", "off"),
        ("on", {"LUXONIS_TELEMETRY_ENABLED": "local"}, "on", "local"),
        ("on", {"DO_NOT_TRACK": "1", "LUXONIS_TELEMETRY_ENABLED": "1"}, "on", "off"),
        # an explicit ENABLED=1 overrides a library that turned telemetry off ...
        ("off", {"LUXONIS_TELEMETRY_ENABLED": "1"}, None, "on"),
        ("off", {"LUXONIS_TELEMETRY_ENABLED": "true"}, "on", "on"),
        # ... a stored `enable` does not (it only undoes `disable`)
        ("off", {}, "on", "off"),
        ("off", {}, None, "off"),
        # local mode is the user's to choose: a library's TelemetryConfig(local=True) is ignored
        ("local", {}, None, "on"),
        ("local", {}, "on", "on"),
        ("local", {}, "off", "off"),
        ("off", {"LUXONIS_TELEMETRY_ENABLED": "local"}, None, "local"),
    ],
)
def test_the_most_private_choice_wins(
    library: str, env: dict[str, str], settings: str | None, mode: str, home: Path
) -> None:
    if settings is not None:
        stored(home, settings)
    assert decide_mode(library, env).mode == mode
    given: dict[str, TelemetryDefaults | TelemetryConfig] = {
        "on": TelemetryDefaults(),
        "off": TelemetryDefaults(enabled=False),
        "local": TelemetryConfig(local=True),
    }
    config = TelemetryConfig.from_environ(given[library], environ=env)
    assert config.mode == mode
    assert config.enabled is (mode != "off")
    assert config.local is (mode == "local")


@pytest.mark.parametrize(
    ("env", "settings", "source", "reason"),
    [
        ({}, None, "default", "default"),
        ({"DO_NOT_TRACK": "1"}, None, "environment", "DO_NOT_TRACK"),
        ({"LUXONIS_TELEMETRY_ENABLED": "off"}, None, "environment", "LUXONIS_TELEMETRY_ENABLED"),
        ({"LUXONIS_TELEMETRY_ENABLED": "nah"}, None, "environment", "is not one of"),
        ({"LUXONIS_TELEMETRY_ENABLED": "local"}, None, "environment", "'local'"),
        ({"LUXONIS_TELEMETRY_ENABLED": "1"}, None, "environment", "'1'"),
        ({}, "off", "settings", "luxonis-telemetry disable"),
        ({}, "local", "settings", "luxonis-telemetry local"),
        ({}, "on", "settings", "luxonis-telemetry enable"),
    ],
)
def test_decide_mode_says_who_decided_and_why(
    env: dict[str, str], settings: str | None, source: str, reason: str, home: Path
) -> None:
    if settings is not None:
        stored(home, settings)
    decision = decide_mode("on", env)
    assert decision.source == source
    assert reason in decision.reason
    assert decision.problem is None
    assert decision.mode in repr(decision)


def test_decide_mode_for_the_librarys_own_choice() -> None:
    off = decide_mode("off", {})
    assert (off.mode, off.source) == ("off", "library")
    assert decide_mode("on", {}).mode == "on"


def test_a_broken_settings_file_turns_telemetry_off_and_says_so(home: Path) -> None:
    path = write_settings(home, "{not json")
    decision = decide_mode("on", {"LUXONIS_TELEMETRY_ENABLED": "1"})
    assert decision.mode == "off"
    assert decision.source == "settings"
    assert decision.problem is not None
    assert str(path) in decision.problem
    assert decision.reason == decision.problem
    assert TelemetryConfig.from_environ(environ={}).enabled is False


def test_a_problem_is_reported_even_when_something_else_decided(home: Path) -> None:
    write_settings(home, json.dumps({"v": 99, "mode": "on"}))
    decision = decide_mode("on", {"LUXONIS_TELEMETRY_ENABLED": "local"})
    assert decision.mode == "local"
    assert decision.source == "environment"
    assert decision.problem is not None
    assert "newer format" in decision.problem


# -- ./.env may only make telemetry more private -------------------------------------


@pytest.fixture
def dotenv(tmp_path: Path) -> Path:
    """``./.env`` in the working folder (conftest chdirs into tmp_path)."""
    assert Path.cwd() == tmp_path
    return tmp_path / ".env"


@pytest.mark.parametrize(
    ("content", "mode"),
    [
        ("LUXONIS_TELEMETRY_ENABLED=0\n", "off"),
        ("LUXONIS_TELEMETRY_ENABLED=false  # no thanks\n", "off"),
        ('export LUXONIS_TELEMETRY_ENABLED="off"\n', "off"),
        ("LUXONIS_TELEMETRY_ENABLED = 'no'\n", "off"),
        ("LUXONIS_TELEMETRY_ENABLED=whatever\n", "off"),
        ("DO_NOT_TRACK=1\n", "off"),
        ("# LUXONIS_TELEMETRY_ENABLED=0\n", "on"),
        ("LUXONIS_TELEMETRY_ENABLED=local\n", "local"),
        ("LUXONIS_TELEMETRY_ENABLED=1\n", "on"),
        ("LUXONIS_TELEMETRY_ENABLED=0\nLUXONIS_TELEMETRY_ENABLED=1\n", "on"),  # last one counts
        ("\x00\xff garbage\n", "on"),
    ],
)
def test_dotenv_can_turn_telemetry_off_or_local(content: str, mode: str, dotenv: Path) -> None:
    dotenv.write_text(content, encoding="latin-1")
    config = TelemetryConfig.from_environ()
    assert config.mode == mode
    if mode != "on":
        assert decide_mode("on", os.environ, read_dotenv()).source == "dotenv"


def test_dotenv_never_turns_telemetry_on(dotenv: Path, home: Path) -> None:
    dotenv.write_text("LUXONIS_TELEMETRY_ENABLED=1\nDO_NOT_TRACK=0\n")
    assert TelemetryConfig.from_environ(TelemetryDefaults(enabled=False)).mode == "off"
    stored(home, "off")
    assert TelemetryConfig.from_environ().mode == "off"
    stored(home, "local")
    assert TelemetryConfig.from_environ().mode == "local"


def test_dotenv_never_changes_where_events_go(dotenv: Path) -> None:
    dotenv.write_text(
        "LUXONIS_TELEMETRY_API_KEY=phc_attacker\n"
        "LUXONIS_TELEMETRY_ENDPOINT=https://attacker.example\n"
        "LUXONIS_TELEMETRY_BACKEND=stdout\n"
        "LUXONIS_TELEMETRY_DEBUG=1\n"
        "LUXONIS_TELEMETRY_SPOOL_DIR=/tmp/attacker\n"
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH=/tmp/attacker_id\n"
        "LUXONIS_TELEMETRY_ID=attacker\n"
        "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT=1\n"
    )
    defaults = TelemetryDefaults(api_key="phc_library", endpoint="https://library.example")
    config = TelemetryConfig.from_environ(defaults)
    assert config == TelemetryConfig.from_environ(defaults, environ=dict(os.environ))
    assert config.api_key == "phc_library"
    assert config.endpoint == "https://library.example"
    assert config.backend == "posthog"
    assert config.debug is False
    assert config.spool_dir is None
    assert config.install_id_path is None
    assert config.distinct_id is None
    assert set(read_dotenv()) == set()


def test_dotenv_is_read_only_for_the_real_environment(dotenv: Path) -> None:
    dotenv.write_text("LUXONIS_TELEMETRY_ENABLED=0\n")
    assert TelemetryConfig.from_environ().mode == "off"
    assert TelemetryConfig.from_environ(environ={}).mode == "on"
    assert TelemetryConfig.from_environ(environ=dict(os.environ)).mode == "on"


def test_dotenv_of_a_parent_folder_is_not_read(dotenv: Path, tmp_path: Path) -> None:
    dotenv.write_text("LUXONIS_TELEMETRY_ENABLED=0\n")
    child = tmp_path / "child"
    child.mkdir()
    os.chdir(child)
    assert TelemetryConfig.from_environ().mode == "on"


def test_a_symlinked_dotenv_counts(dotenv: Path, tmp_path: Path) -> None:
    real = tmp_path / "env.local"
    real.write_text("DO_NOT_TRACK=1\n")
    dotenv.symlink_to(real)
    assert TelemetryConfig.from_environ().mode == "off"


def test_a_dotenv_of_another_owner_counts(dotenv: Path) -> None:
    """A project mounted into a container belongs to another uid; its opt-out still counts."""
    dotenv.write_text("LUXONIS_TELEMETRY_ENABLED=0\n")
    try:
        os.chown(dotenv, 65534, 65534)
    except PermissionError:
        pytest.skip("needs root to give a file to another user")
    assert TelemetryConfig.from_environ().mode == "off"


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling"])
def test_a_dotenv_that_is_no_file_is_ignored_without_hanging(kind: str, tmp_path: Path) -> None:
    target = tmp_path / ".env"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "missing")
    done = run_python(
        "from luxonis_telemetry.config import TelemetryConfig\n"
        "print(TelemetryConfig.from_environ().mode)",
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "on"


def test_a_dotenv_opt_out_reaches_a_real_telemetry(dotenv: Path, spool_path: Path) -> None:
    dotenv.write_text("LUXONIS_TELEMETRY_ENABLED=0\n")
    telemetry = Telemetry("lib", config=TelemetryConfig(enabled=True))
    telemetry.capture("e")
    assert not telemetry.is_enabled
    assert not spool_path.exists()


# -- folders ----------------------------------------------------------------------------


def test_default_folders_follow_xdg(home: Path) -> None:
    assert config_dir() == str(home / ".config" / "luxonis-telemetry")
    assert spool_dir() == str(home / ".local" / "state" / "luxonis-telemetry" / "spool")
    assert settings_path() == str(home / ".config" / "luxonis-telemetry" / "settings.json")
    assert install_id_path() == str(home / ".config" / "luxonis-telemetry" / "install_id")


def test_explicit_folders(tmp_path: Path) -> None:
    env = {
        "LUXONIS_TELEMETRY_CONFIG_DIR": str(tmp_path / "cfg"),
        "LUXONIS_TELEMETRY_SPOOL_DIR": str(tmp_path / "sp"),
    }
    assert config_dir(env) == str(tmp_path / "cfg")
    assert settings_path(env) == str(tmp_path / "cfg" / "settings.json")
    assert install_id_path(environ=env) == str(tmp_path / "cfg" / "install_id")
    assert spool_dir(environ=env) == str(tmp_path / "sp")
    assert ignored_settings(env) == []


@pytest.mark.parametrize(
    "name",
    [
        "LUXONIS_TELEMETRY_SPOOL_DIR",
        "LUXONIS_TELEMETRY_CONFIG_DIR",
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH",
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
    ],
)
def test_relative_folder_settings_are_refused_and_reported(name: str, home: Path) -> None:
    env = {**os.environ, name: "relative/folder"}
    assert config_dir(env) == str(home / ".config" / "luxonis-telemetry")
    assert spool_dir(environ=env) == str(home / ".local" / "state" / "luxonis-telemetry" / "spool")
    assert install_id_path(environ=env) == str(
        home / ".config" / "luxonis-telemetry" / "install_id"
    )
    config = TelemetryConfig.from_environ(environ=env)
    assert config.spool_dir is None
    assert config.install_id_path is None
    problems = ignored_settings(env)
    assert len(problems) == 1
    assert name in problems[0]
    assert "relative/folder" in problems[0]


def test_a_nul_in_a_folder_setting_is_refused() -> None:
    config = TelemetryConfig(spool_dir="/tmp/a\0b", install_id_path="/tmp/\0")
    assert TelemetryConfig.from_environ(config, environ={}).spool_dir is None
    assert install_id_path(config, environ={}) is not None
    assert spool_dir(config, environ={}) is not None


def test_relative_folders_in_a_librarys_config_are_refused(home: Path) -> None:
    library = TelemetryConfig(spool_dir="spool_here", install_id_path="id_here")
    config = TelemetryConfig.from_environ(library, environ={})
    assert config.spool_dir is None
    assert config.install_id_path is None
    # and a relative path in a config used directly means the default, not "no install id"
    assert install_id_path(library, environ={}) == str(
        home / ".config" / "luxonis-telemetry" / "install_id"
    )
    assert spool_dir(library, environ={}) == str(
        home / ".local" / "state" / "luxonis-telemetry" / "spool"
    )


def test_relative_folder_settings_create_nothing_in_the_working_folder(
    tmp_path: Path, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in (
        "LUXONIS_TELEMETRY_SPOOL_DIR",
        "LUXONIS_TELEMETRY_CONFIG_DIR",
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH",
        "XDG_STATE_HOME",
        "XDG_CONFIG_HOME",
    ):
        monkeypatch.setenv(name, "rel")
    Telemetry("lib").capture("e")
    assert list(work.iterdir()) == []
    records = spool_records(spool_path)
    assert [r["event"] for r in records] == ["e"]
    assert records[0]["context"]["install_id"] is not None


def test_no_home_means_no_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "not/absolute")
    env = {"HOME": "not/absolute"}
    assert config_dir(env) is None
    assert spool_dir(environ=env) is None
    assert settings_path(env) is None
    assert install_id_path(environ=env) is None


# -- numbers never raise ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["1e400", "1e308", "-5", "0", "nan", "NaN", "inf", "-inf", "garbage", "", "1e-300", "0x10"],
)
def test_unusable_cap_settings_fall_back_to_the_default(raw: str) -> None:
    env = {"LUXONIS_TELEMETRY_MAX_SPOOL_MB": raw, "LUXONIS_TELEMETRY_MAX_AGE_DAYS": raw}
    config = TelemetryConfig.from_environ(environ=env)
    assert config.max_spool_bytes == DEFAULT_MAX_SPOOL_BYTES
    if raw != "1e-300":
        assert config.max_event_age_days == DEFAULT_MAX_EVENT_AGE_DAYS


def test_unusable_caps_keep_the_librarys_caps() -> None:
    library = TelemetryConfig(max_spool_bytes=4096, max_event_age_days=2.0)
    env = {"LUXONIS_TELEMETRY_MAX_SPOOL_MB": "1e400", "LUXONIS_TELEMETRY_MAX_AGE_DAYS": "nan"}
    config = TelemetryConfig.from_environ(library, environ=env)
    assert (config.max_spool_bytes, config.max_event_age_days) == (4096, 2.0)


@pytest.mark.parametrize(("raw", "expected"), [("0.5", 512 * 1024), (" 7 ", 7 * 1024 * 1024)])
def test_usable_cap_settings(raw: str, expected: int) -> None:
    env = {"LUXONIS_TELEMETRY_MAX_SPOOL_MB": raw}
    assert TelemetryConfig.from_environ(environ=env).max_spool_bytes == expected


def test_huge_numbers_never_break_a_real_telemetry(
    monkeypatch: pytest.MonkeyPatch, spool_path: Path
) -> None:
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "1e400")
    monkeypatch.setenv("LUXONIS_TELEMETRY_MAX_AGE_DAYS", "1e308")
    Telemetry("lib").capture("e")
    assert [r["event"] for r in spool_records(spool_path)] == ["e"]


# -- CI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "woodpecker"}, True),
        ({"CI": "false"}, False),
        ({"CI": "0"}, False),
        ({"CI": ""}, False),
        ({"GITHUB_ACTIONS": "true"}, True),
        ({"GITLAB_CI": "true"}, True),
        ({"JENKINS_URL": "http://jenkins"}, True),
        ({"BUILDKITE": "true"}, True),
        ({"TEAMCITY_VERSION": "2024.1"}, True),
        ({"TF_BUILD": "True"}, True),
        ({"GITHUB_ACTIONS": ""}, False),
        ({"CI": "false", "GITHUB_ACTIONS": "true"}, True),
    ],
)
def test_is_ci(env: dict[str, str], expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_ci(env) is expected
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_ci() is expected


def test_settings_file_permissions_are_not_touched_by_reading(home: Path) -> None:
    path = write_settings(home, json.dumps({"v": 1, "mode": "local"}))
    path.chmod(0o644)
    assert TelemetryConfig.from_environ(environ={}).mode == "local"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "1e400"),
        ("LUXONIS_TELEMETRY_MAX_SPOOL_MB", "-5"),
        ("LUXONIS_TELEMETRY_MAX_AGE_DAYS", "nan"),
        ("LUXONIS_TELEMETRY_MAX_AGE_DAYS", "99999999999"),
        ("LUXONIS_TELEMETRY_EXIT_TIMEOUT", "forever"),
    ],
)
def test_unusable_numbers_are_ignored_and_reported(name: str, value: str) -> None:
    """Issue 8.19: a huge number never raises, and ``status`` says it was ignored."""
    env = {name: value}
    config = TelemetryConfig.from_environ(environ=env)
    assert config.max_spool_bytes == TelemetryConfig().max_spool_bytes
    assert config.max_event_age_days == TelemetryConfig().max_event_age_days
    [problem] = ignored_settings(env)
    assert problem.startswith(f"{name}={value!r} is not a number of") and "ignored" in problem


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 1.5), ("3", 3.0), ("20", 20.0), ("21", 1.5), ("1e400", 1.5), ("0", 1.5), ("x", 1.5)],
)
def test_the_exit_budget_is_bounded(value: str | None, seconds: float) -> None:
    """Review: a large LUXONIS_TELEMETRY_EXIT_TIMEOUT must not keep a helper alive for days."""
    env = {} if value is None else {"LUXONIS_TELEMETRY_EXIT_TIMEOUT": value}
    assert exit_budget(1.5, env) == seconds
