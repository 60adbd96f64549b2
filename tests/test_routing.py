"""Where each library's events go: flags > environment > recorded here > published defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from luxonis_telemetry import Telemetry, TelemetryConfig
from luxonis_telemetry._destinations import RecordedDestination
from luxonis_telemetry._routing import DEFAULTS_ENTRY_POINT_GROUP, Destination, Router
from luxonis_telemetry.config import DEFAULT_ENDPOINT
from luxonis_telemetry.testing import FakePostHog
from luxonis_telemetry.uploader import upload

RECORDED = {
    "lib": RecordedDestination(
        backend="posthog", endpoint="https://recorded.example", api_key="phc_recorded"
    )
}
ENV = {
    "LUXONIS_TELEMETRY_ENDPOINT": "https://env.example",
    "LUXONIS_TELEMETRY_API_KEY": "phc_env",
}


def test_recorded_destination_is_used_when_nothing_overrides_it() -> None:
    found = Router(RECORDED, {})("lib")
    assert (found.backend, found.endpoint, found.api_key) == (
        "posthog",
        "https://recorded.example",
        "phc_recorded",
    )
    assert found.source == "recorded here"


def test_environment_beats_recorded() -> None:
    found = Router(RECORDED, ENV)("lib")
    assert (found.endpoint, found.api_key, found.source) == (
        "https://env.example",
        "phc_env",
        "environment",
    )


def test_flags_beat_environment() -> None:
    found = Router(RECORDED, ENV, endpoint=" https://flag.example ", api_key="phc_flag")("lib")
    assert (found.endpoint, found.api_key, found.source) == (
        "https://flag.example",
        "phc_flag",
        "command line",
    )


def test_an_environment_endpoint_alone_redirects_the_recorded_key() -> None:
    """A company points every tool at its own PostHog with the endpoint variable alone."""
    found = Router(RECORDED, {"LUXONIS_TELEMETRY_ENDPOINT": "https://company.example"})("lib")
    assert (found.endpoint, found.api_key) == ("https://company.example", "phc_recorded")


def test_blank_overrides_are_ignored() -> None:
    found = Router(RECORDED, {"LUXONIS_TELEMETRY_ENDPOINT": "  "}, api_key="")("lib")
    assert (found.endpoint, found.api_key) == ("https://recorded.example", "phc_recorded")


def test_nothing_known_means_posthog_without_a_key() -> None:
    found = Router({}, {})("never-ran-here")
    assert (found.backend, found.endpoint, found.api_key, found.source) == (
        "posthog",
        DEFAULT_ENDPOINT,
        None,
        "default",
    )


def test_backend_names_ignore_case() -> None:
    assert Router({}, {"LUXONIS_TELEMETRY_BACKEND": " MyBackend "})("lib").backend == "mybackend"


def test_geoip_choice_follows_the_recorded_library() -> None:
    recorded = {
        "on": RecordedDestination(api_key="k", disable_geoip=False),
        "off": RecordedDestination(api_key="k", disable_geoip=True),
        "unknown": RecordedDestination(api_key="k"),
    }
    router = Router(recorded, {})
    assert [router(name).disable_geoip for name in ("on", "off", "unknown")] == [False, True, True]


def test_destinations_compare_by_what_they_send_to() -> None:
    one = Destination("PostHog", "https://a", "k", source="environment")
    two = Destination("posthog", "https://a", "k", source="recorded here")
    assert one == two and hash(one) == hash(two)
    assert one != Destination("posthog", "https://a", "other")
    assert one != Destination("posthog", "https://a", "k", disable_geoip=False)


def test_describe_masks_credentials_and_never_shows_the_key() -> None:
    """8.18."""
    destination = Destination("posthog", "https://user:hunter2@ph.example/x", "phc_secret_key")
    for shown in (destination.describe(), repr(destination)):
        assert "hunter2" not in shown and "phc_secret_key" not in shown
        assert "https://***@ph.example/x" in shown


def test_the_backend_config_carries_the_destination() -> None:
    config = Destination("posthog", "https://a", "k", disable_geoip=False).config()
    assert (config.backend, config.endpoint, config.api_key, config.disable_geoip) == (
        "posthog",
        "https://a",
        "k",
        False,
    )


def test_a_dotenv_file_never_redirects_events(tmp_path: Path) -> None:
    """A cloned repository's .env may turn telemetry off, never move the user's key."""
    with FakePostHog() as recorded, FakePostHog() as planted:
        config = TelemetryConfig(api_key="phc_mine", endpoint=recorded.url)
        Telemetry("lib", config=config).capture("e")
        (tmp_path / ".env").write_text(
            f"LUXONIS_TELEMETRY_ENDPOINT={planted.url}\n"
            "LUXONIS_TELEMETRY_API_KEY=phc_theirs\n"
            "LUXONIS_TELEMETRY_BACKEND=stdout\n"
        )
        assert os.getcwd() == str(tmp_path)
        assert upload(budget=20).ok
        assert planted.requests == 0
        assert [b.api_key for b in recorded.batches] == ["phc_mine"]


# ---------------------------------------------------------------- published defaults


def _publish(folder: Path, entries: str, code: str) -> Path:
    """An installed distribution (module + .dist-info) publishing library defaults."""
    (folder / "acme_defaults").mkdir(parents=True)
    (folder / "acme_defaults" / "__init__.py").write_text(code)
    dist = folder / "acme_defaults-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-defaults\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{DEFAULTS_ENTRY_POINT_GROUP}]\n{entries}")
    return folder


DEFAULTS_CODE = """\
from luxonis_telemetry import TelemetryConfig, TelemetryDefaults
DEFAULTS = TelemetryDefaults(api_key="phc_acme", endpoint="https://acme.example", disable_geoip=False)
def made():
    return TelemetryDefaults(api_key="phc_made", endpoint="https://made.example")
CONFIG = TelemetryConfig(api_key="phc_cfg", endpoint="https://cfg.example")
def broken():
    raise RuntimeError("boom")
"""

ROUTE = """\
import sys
from luxonis_telemetry._routing import Router
from luxonis_telemetry._destinations import RecordedDestination
recorded = {"recorded": RecordedDestination(api_key="phc_here", endpoint="https://here.example")}
env = dict(arg.split("=", 1) for arg in sys.argv[2:])
found = Router(recorded, env)(sys.argv[1])
print(found.endpoint, found.api_key, found.disable_geoip, found.source, sep="|")
"""


def _route(plugin: Path, library: str, *env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", ROUTE, library, *env],
        env=dict(os.environ, PYTHONPATH=str(plugin)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split("|")


@pytest.fixture
def published(tmp_path: Path) -> Path:
    return _publish(
        tmp_path / "site",
        "acme = acme_defaults:DEFAULTS\n"
        "made = acme_defaults:made\n"
        "cfg = acme_defaults:CONFIG\n"
        "broken = acme_defaults:broken\n"
        "recorded = acme_defaults:DEFAULTS\n",
        DEFAULTS_CODE,
    )


def test_published_defaults_route_a_library_that_never_ran_here(published: Path) -> None:
    assert _route(published, "acme") == [
        "https://acme.example",
        "phc_acme",
        "False",
        "published by the library",
    ]
    assert _route(published, "made")[:2] == ["https://made.example", "phc_made"]
    assert _route(published, "cfg")[:2] == ["https://cfg.example", "phc_cfg"]


def test_recorded_and_user_settings_beat_published_defaults(published: Path) -> None:
    assert _route(published, "recorded")[:2] == ["https://here.example", "phc_here"]
    user = _route(published, "acme", "LUXONIS_TELEMETRY_API_KEY=phc_user")
    assert user[1] == "phc_user" and user[3] == "environment"


def test_broken_published_defaults_are_skipped(published: Path) -> None:
    assert _route(published, "broken") == [DEFAULT_ENDPOINT, "None", "True", "default"]
