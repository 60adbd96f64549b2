from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from luxonis_telemetry.config import (
    DEFAULT_ENDPOINT,
    TelemetryConfig,
    enabled_decision,
    is_ci,
    parse_bool,
    persisted_choice,
)


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
        ("", None),
        (None, None),
    ],
)
def test_parse_bool(raw: str | None, expected: bool | None) -> None:
    assert parse_bool(raw) is expected


def test_config_is_frozen_and_hides_the_key() -> None:
    config = TelemetryConfig(api_key="phc_secret")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.enabled = False  # type: ignore[misc]
    assert "phc_secret" not in repr(config)


def test_defaults() -> None:
    config = TelemetryConfig.from_env(environ={})
    assert config.enabled
    assert config.effective_backend == "posthog"
    assert config.effective_endpoint == DEFAULT_ENDPOINT
    assert config.api_key is None
    assert config.upload_on_exit


def test_user_environment_beats_library_config() -> None:
    library = TelemetryConfig(backend="posthog", api_key="lib", endpoint="https://lib")
    env = {
        "LUXONIS_TELEMETRY_API_KEY": "user",
        "LUXONIS_TELEMETRY_ENDPOINT": "https://company.example",
        "LUXONIS_TELEMETRY_BACKEND": "noop",
        "LUXONIS_TELEMETRY_ID": "me",
        "LUXONIS_TELEMETRY_SPOOL_DIR": "/tmp/x",
        "LUXONIS_TELEMETRY_INSTALL_ID_PATH": "/tmp/id",
        "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "off",
        "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "2",
        "LUXONIS_TELEMETRY_MAX_AGE_DAYS": "3",
    }
    config = TelemetryConfig.from_env(library, env)
    assert config.api_key == "user"
    assert config.endpoint == "https://company.example"
    assert config.backend == "noop"
    assert config.distinct_id == "me"
    assert config.spool_dir == "/tmp/x"
    assert config.install_id_path == "/tmp/id"
    assert config.upload_on_exit is False
    assert config.max_spool_bytes == 2 * 1024 * 1024
    assert config.max_event_age_days == 3


def test_library_config_beats_defaults() -> None:
    library = TelemetryConfig(api_key="lib", endpoint="https://lib", backend="stdout")
    config = TelemetryConfig.from_env(library, {})
    assert (config.api_key, config.endpoint, config.backend) == ("lib", "https://lib", "stdout")


def test_debug_means_stdout_unless_a_backend_is_named() -> None:
    assert (
        TelemetryConfig.from_env(environ={"LUXONIS_TELEMETRY_DEBUG": "1"}).effective_backend
        == "stdout"
    )
    named = {"LUXONIS_TELEMETRY_DEBUG": "1", "LUXONIS_TELEMETRY_BACKEND": "posthog"}
    assert TelemetryConfig.from_env(environ=named).effective_backend == "posthog"
    assert TelemetryConfig(debug=True).effective_backend == "stdout"


@pytest.mark.parametrize(
    "env",
    [
        {"LUXONIS_TELEMETRY_ENABLED": "0"},
        {"LUXONIS_TELEMETRY_ENABLED": "false"},
        {"LUXONIS_TELEMETRY_ENABLED": "garbage"},
        {"DO_NOT_TRACK": "1"},
        {"DO_NOT_TRACK": "true", "LUXONIS_TELEMETRY_ENABLED": "1"},
    ],
)
def test_user_opt_out_wins_over_library(env: dict[str, str]) -> None:
    config = TelemetryConfig.from_env(TelemetryConfig(enabled=True), env)
    assert config.enabled is False


def test_persisted_disable_wins_over_env_enable(home: Path) -> None:
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"enabled": False}))
    assert persisted_choice() is False
    import os

    env = dict(os.environ, LUXONIS_TELEMETRY_ENABLED="1")
    enabled, reason = enabled_decision(True, env)
    assert not enabled
    assert "luxonis-telemetry disable" in reason


def test_corrupt_settings_file_means_no_choice(home: Path) -> None:
    settings = home / ".config" / "luxonis-telemetry" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_bytes(b"\x00{not json")
    assert persisted_choice() is None


def test_garbage_numbers_are_ignored() -> None:
    env = {"LUXONIS_TELEMETRY_MAX_SPOOL_MB": "-5", "LUXONIS_TELEMETRY_MAX_AGE_DAYS": "nan"}
    config = TelemetryConfig.from_env(environ=env)
    assert config.max_spool_bytes == TelemetryConfig().max_spool_bytes
    assert config.max_event_age_days == TelemetryConfig().max_event_age_days


def test_reasons_name_their_source() -> None:
    assert enabled_decision(True, {"DO_NOT_TRACK": "1"}) == (False, "DO_NOT_TRACK is set")
    assert (
        "LUXONIS_TELEMETRY_ENABLED" in enabled_decision(True, {"LUXONIS_TELEMETRY_ENABLED": "0"})[1]
    )
    assert "TelemetryConfig" in enabled_decision(False, {})[1]


def test_ci_detection() -> None:
    assert is_ci({"CI": "true"})
    assert is_ci({"GITHUB_ACTIONS": "true"})
    assert not is_ci({"CI": "false"})
    assert not is_ci({})


def test_import_survives_garbage_environment() -> None:
    import os

    from tests.conftest import run_python

    env = dict(os.environ)
    env.update(
        {
            "LUXONIS_TELEMETRY_ENABLED": "\x7f??",
            "LUXONIS_TELEMETRY_MAX_SPOOL_MB": "lots",
            "LUXONIS_TELEMETRY_DEBUG": "perhaps",
            "DO_NOT_TRACK": "",
        }
    )
    result = run_python(
        "import luxonis_telemetry as t; x = t.Telemetry('a'); x.capture('e'); print(x.enabled)",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert result.stderr == ""


@pytest.mark.parametrize("xdg", [True, False])
def test_folders_match_platformdirs(monkeypatch: pytest.MonkeyPatch, home: Path, xdg: bool) -> None:
    import platformdirs

    from luxonis_telemetry.config import config_dir, spool_dir

    if not xdg:
        monkeypatch.delenv("XDG_STATE_HOME")
        monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config_dir() == platformdirs.user_config_dir("luxonis-telemetry", appauthor=False)
    expected = platformdirs.user_state_dir("luxonis-telemetry", appauthor=False)
    assert spool_dir() == str(Path(expected) / "spool")
