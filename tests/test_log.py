"""``_log``: the one never-raise guard, and diagnostics that never become the failure."""

from __future__ import annotations

import logging
import sys

import pytest

from luxonis_telemetry import _log, _state
from tests.conftest import run_python


def observed() -> list[tuple[str, BaseException]]:
    seen: list[tuple[str, BaseException]] = []
    _state.state.error_observers.append(lambda where, exc: seen.append((where, exc)))
    return seen


@pytest.mark.allow_internal_errors
def test_guard_swallows_an_exception_and_reports_it() -> None:
    seen = observed()
    calls: list[str] = []
    guard = _log.Guard("somewhere", lambda: calls.append("on_error"))
    with guard:
        raise ValueError("library bug")
    assert [(where, type(exc)) for where, exc in seen] == [("somewhere", ValueError)]
    assert calls == ["on_error"]


def test_guard_is_silent_when_nothing_fails() -> None:
    seen = observed()
    calls: list[str] = []
    with _log.Guard("somewhere", lambda: calls.append("on_error")):
        pass
    assert seen == []
    assert calls == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_guard_lets_the_hosts_base_exceptions_through(error: type[BaseException]) -> None:
    seen = observed()
    with pytest.raises(error), _log.Guard("somewhere"):
        raise error()
    assert seen == []


@pytest.mark.allow_internal_errors
def test_guard_is_reusable_and_reentrant() -> None:
    seen = observed()
    guard = _log.Guard("outer")
    with guard:
        with guard:
            raise RuntimeError("inner")
        raise RuntimeError("outer")
    with guard:
        raise KeyError("again")
    assert [type(exc) for _where, exc in seen] == [RuntimeError, RuntimeError, KeyError]


@pytest.mark.allow_internal_errors
def test_a_failing_on_error_or_observer_never_escapes() -> None:
    def broken_observer(_where: str, _exc: BaseException) -> None:
        raise RuntimeError("observer bug")

    _state.state.error_observers.insert(0, broken_observer)
    seen = observed()

    def broken_callback() -> None:
        raise OSError("callback bug")

    with _log.Guard("somewhere", broken_callback):
        raise ValueError("x")
    assert [type(exc) for _where, exc in seen] == [ValueError]


@pytest.mark.allow_internal_errors
def test_internal_errors_are_logged_at_debug_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=_log.LOGGER_NAME)

    def deep() -> None:
        raise ZeroDivisionError("deep failure")

    with _log.Guard("capture"):
        deep()
    [record] = [r for r in caplog.records if r.name == _log.LOGGER_NAME]
    assert record.levelno == logging.DEBUG
    assert "capture failed: ZeroDivisionError: deep failure" in record.getMessage()
    assert record.exc_info is not None
    assert "in deep" in caplog.text  # the traceback names the failing function


def test_nothing_is_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=_log.LOGGER_NAME)
    _log.debug("a decision: %s", "explained")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "luxonis-telemetry: a decision: explained")
    ]


@pytest.mark.allow_internal_errors
def test_broken_logging_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import logging`` failing (e.g. interrupted half-way by a signal handler) is survived."""
    seen = observed()
    monkeypatch.setitem(sys.modules, "logging", None)  # makes `import logging` raise ImportError
    _log.internal_error("somewhere", RuntimeError("x"))
    _log.debug("also %s", "fine")
    with _log.Guard("guarded"):
        raise RuntimeError("y")
    assert [where for where, _exc in seen] == ["somewhere", "guarded"]


def test_debug_enabled_follows_the_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=_log.LOGGER_NAME)
    assert not _log.debug_enabled()
    caplog.set_level(logging.DEBUG, logger=_log.LOGGER_NAME)
    assert _log.debug_enabled()


def test_debug_is_off_without_logging_or_with_a_broken_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "logging", None)
    assert not _log.debug_enabled()
    monkeypatch.setitem(sys.modules, "logging", type(sys)("logging"))
    assert not _log.debug_enabled()


@pytest.mark.allow_internal_errors
def test_a_half_imported_logging_module_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a signal handler meets while the first ``import logging`` runs: no getLogger yet."""
    partial = type(sys)("logging")
    monkeypatch.setitem(sys.modules, "logging", partial)
    _log.internal_error("somewhere", RuntimeError("x"))
    _log.debug("fine")


def test_capture_survives_a_signal_handler_interrupting_the_first_import_of_logging() -> None:
    """Issue 8.2: the first ``import logging`` (the host's: the library never imports it)
    is interrupted by a signal handler whose capture fails inside; the internal-error
    logger meets a half-imported ``logging`` and nothing escapes."""
    code = r"""
import importlib.abc, importlib.machinery, os, signal, sys
assert "logging" not in sys.modules
from luxonis_telemetry import Telemetry, client
assert "logging" not in sys.modules, "logging must load lazily"

def explode(*_args, **_kwargs):
    raise RuntimeError("internal bug")

client.encode_line = explode  # every capture now fails inside and reports an internal error
telemetry = Telemetry("reentry")
inner = []

def handler(_signum, _frame):
    inner.append(hasattr(sys.modules.get("logging"), "getLogger"))
    telemetry.capture("inner")

signal.signal(signal.SIGUSR1, handler)

class Interrupting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                os.kill(os.getpid(), signal.SIGUSR1)  # logging is half-imported right now
                real.exec_module(module)

        spec.loader = Loader()
        return spec

sys.meta_path.insert(0, Interrupting())
telemetry.capture("before")  # fails inside; logging is not loaded, so nothing is imported
assert "logging" not in sys.modules
import logging  # the host's first import, interrupted by the capturing signal handler
telemetry.capture("outer")
assert inner == [False], inner  # the handler ran while logging was half-imported
print("survived", telemetry.dropped)
"""
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["survived", "3"]
    assert "Traceback" not in result.stderr
