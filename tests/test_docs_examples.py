"""Every Python example in README.md and docs/*.md runs as written, and every relative link works.

Each ```python block is written to a file and run as a real program, ``python
<file> --help`` (a Typer example that ends in ``app()`` prints its help), in
the isolated HOME/XDG/working folder the conftest gives each test. An audit
hook (installed by a ``sitecustomize`` module, so the example itself runs
unchanged) refuses and records every outgoing connection and every process
start: an example may name ``us.i.posthog.com``, but no example ever reaches it.
It also notes every internal error the library swallows, which fails the
example as the conftest fails an in-process test.

An HTML comment right before a block changes how it is run:

- ``<!-- not run: reason -->``: skipped, with that reason;
- ``<!-- stderr: reason -->``: the block is documented to print to stderr.

The seed document is covered by tests/test_seed_examples.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

AUDIT_HOOK = '''\
"""Installed for docs examples: no connection, no process, no swallowed internal error."""
import os
import sys

_LOG = os.environ.pop("DOCS_EXAMPLE_AUDIT_LOG")
# audit event -> (what the example tried, which argument names the target)
_WATCHED = {
    "socket.connect": ("connect to", 1),
    "socket.sendto": ("send a datagram to", 1),
    "socket.getaddrinfo": ("resolve", 0),
    "subprocess.Popen": ("start", 1),
    "os.posix_spawn": ("start", 1),
    "os.exec": ("exec", 1),
    "os.system": ("run", 0),
}


def _note(line):
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode("utf-8", "backslashreplace"))
    finally:
        os.close(fd)


def _hook(event, args):
    watched = _WATCHED.get(event)
    if watched is None:
        return
    if event == "socket.getaddrinfo" and args[0] in (None, "127.0.0.1", "::1", "localhost"):
        return  # binding a loopback server (FakePostHog) resolves its own address
    line = f"{watched[0]} {args[watched[1]]!r}"
    _note(line)
    raise PermissionError(f"docs example test: refused to let the example {line}")


def _observe(log_module):
    """Note every internal error the library swallows (the conftest fails tests on them)."""
    original = getattr(log_module, "internal_error", None)
    if original is None:
        _note("(test setup) luxonis_telemetry._log.internal_error is gone: update this hook")
        return

    def internal_error(where, exc):
        _note(f"swallow an internal error in {where}: {exc!r}")
        original(where, exc)

    log_module.internal_error = internal_error


class _WatchLog:
    """Wraps ``luxonis_telemetry._log`` as it is first imported, by the example itself."""

    def find_spec(self, name, path, target=None):
        if name != "luxonis_telemetry._log":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _observe(module)

        spec.loader.exec_module = exec_module
        return spec


sys.addaudithook(_hook)
sys.meta_path.insert(0, _WatchLog())
'''

FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not run|stderr)\s*:\s*(?P<reason>.*?)\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(?P<target>\S+)", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+).*?\1", re.DOTALL)
PYTHON = frozenset({"python", "py", "python3"})


@dataclass(frozen=True)
class Example:
    document: Path
    index: int  # among the document's python blocks, from 0
    line: int  # of the opening fence, from 1
    code: str
    skip: str | None
    stderr_allowed: bool

    @property
    def first_line(self) -> str:
        return next((s.strip() for s in self.code.splitlines() if s.strip()), "")

    @property
    def name(self) -> str:
        return (
            f"{self.document.relative_to(REPO)}#{self.index} (line {self.line}): {self.first_line}"
        )


def documents() -> list[Path]:
    """README.md and every docs/*.md: a new page is covered without touching this file."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(text: str) -> list[tuple[int, str, str, list[str]]]:
    """(fence line, info word, code, the HTML comments right before it) for each fenced block."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        comments = []
        j = i - 1
        while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j])):
            if lines[j].strip():
                comments.append(lines[j])
            j -= 1
        found.append(
            (i + 1, opening["info"].lower(), "\n".join(lines[i + 1 : end]) + "\n", comments)
        )
        i = end + 1
    return found


def examples(document: Path) -> list[Example]:
    found: list[Example] = []
    for line, info, code, comments in _blocks(document.read_text(encoding="utf-8")):
        if info not in PYTHON:
            continue
        markers = [m for m in (MARKER.match(c) for c in comments) if m is not None]
        skip = next((m["reason"] for m in markers if m["kind"] == "not run"), None)
        stderr_allowed = any(m["kind"] == "stderr" for m in markers)
        found.append(Example(document, len(found), line, code, skip, stderr_allowed))
    return found


ALL_EXAMPLES = [example for document in documents() for example in examples(document)]


def _params() -> list[Any]:
    params = []
    for example in ALL_EXAMPLES:
        marks = [pytest.mark.skip(reason=example.skip)] if example.skip is not None else []
        params.append(pytest.param(example, id=example.name, marks=marks))
    return params


def run_example(example: Example, folder: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``example`` as ``python <file> --help``; also return what the audit hook noted."""
    hooks = folder / "audit-hook"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = folder / "audit.log"
    program = folder / f"example_{example.index}.py"
    program.write_text(example.code, encoding="utf-8")
    env = dict(os.environ)
    env["LUXONIS_TELEMETRY_UPLOAD_ON_EXIT"] = "0"
    env["DOCS_EXAMPLE_AUDIT_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONSAFEPATH", None)
    result = subprocess.run(
        [sys.executable, str(program), "--help"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("example", _params())
def test_example_runs_as_written(example: Example, tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path  # the conftest's isolated working folder
    result, noted = run_example(example, tmp_path)
    assert noted == "", f"{example.name}: the audit hook saw the example\n{noted}"
    assert result.returncode == 0, f"{example.name} exited {result.returncode}:\n{result.stderr}"
    if not example.stderr_allowed:
        assert result.stderr == "", f"{example.name} printed to stderr:\n{result.stderr}"


def test_the_readme_has_runnable_examples() -> None:
    readme = examples(REPO / "README.md")
    assert [e for e in readme if e.skip is None], "README.md has no runnable python example"


def test_the_audit_hook_refuses_connections_and_processes(tmp_path: Path) -> None:
    """The guard above works: an example that connects or starts a process fails."""
    code = (
        "import socket, subprocess, sys\n"
        "try:\n"
        "    socket.create_connection(('us.i.posthog.com', 443), timeout=5)\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "try:\n"
        "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    example = Example(tmp_path / "x.md", 0, 1, code, None, False)
    result, noted = run_example(example, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["PermissionError", "PermissionError"]
    assert noted.splitlines()[0] == "resolve 'us.i.posthog.com'"
    assert noted.splitlines()[1].startswith("start [")


def test_the_audit_hook_sees_swallowed_internal_errors(tmp_path: Path) -> None:
    code = (
        "from luxonis_telemetry import Telemetry\n"
        "class Unjudgeable:\n"
        "    def __bool__(self):\n"
        "        raise RuntimeError('no truth')\n"
        "Telemetry('lib').capture('e', include_system_metadata=Unjudgeable())\n"
        "print('still running')\n"
    )
    example = Example(tmp_path / "x.md", 0, 1, code, None, False)
    result, noted = run_example(example, tmp_path)
    assert (result.returncode, result.stdout) == (0, "still running\n"), result.stderr
    assert noted == "swallow an internal error in capture: RuntimeError('no truth')\n"


def test_the_markers_and_fences_are_understood(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n"
        "<!-- not run: needs a GPU -->\n\n```python\nimport torch\n```\n"
        "<!-- stderr: the stdout backend prints each event there -->\n```py\nimport sys\n```\n"
        "````markdown\n```python\nnot = code\n```\n````\n"
        "```bash\necho no\n```\n"
    )
    found = examples(page)
    assert [(e.first_line, e.skip, e.stderr_allowed) for e in found] == [
        ("print(1)", None, False),
        ("import torch", "needs a GPU", False),
        ("import sys", None, True),
    ]
    assert [e.line for e in found] == [1, 7, 11]


# -- links ---------------------------------------------------------------------------------


def _prose(text: str) -> str:
    """``text`` without fenced blocks and inline code, where brackets are not links."""
    kept = []
    inside: str | None = None
    for line in text.splitlines():
        opening = FENCE.match(line)
        if inside is None and opening is not None:
            inside = opening["fence"]
        elif inside is not None and re.match(
            rf"^ {{0,3}}{re.escape(inside[0])}{{{len(inside)},}}\s*$", line
        ):
            inside = None
        elif inside is None:
            kept.append(line)
    return INLINE_CODE.sub("", "\n".join(kept))


def relative_links(document: Path) -> list[str]:
    prose = _prose(document.read_text(encoding="utf-8"))
    targets = [m["target"].strip("<>") for m in LINK.finditer(prose)]
    targets += [m["target"] for m in REFERENCE.finditer(prose)]
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^#|^//", t)]


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_existing_files(document: Path) -> None:
    broken = [
        target
        for target in relative_links(document)
        if not (document.parent / target.split("#", 1)[0]).exists()
    ]
    assert broken == [], f"{document.relative_to(REPO)} links to missing files: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    """Issue 9 and 10: the README is the way in to the migration, privacy and authors' pages."""
    readme = REPO / "README.md"
    linked = {(REPO / t.split("#", 1)[0]).resolve() for t in relative_links(readme)}
    unlinked = [
        str(page.relative_to(REPO))
        for page in documents()
        if page != readme and page.resolve() not in linked
    ]
    assert unlinked == [], f"README.md does not link {unlinked}"


def test_links_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "See [privacy](docs/privacy.md#modes), [site](https://example.com), [top](#top),\n"
        '![logo](<img/logo one.png> "Logo") and `[not](a-link.md)`.\n'
        "```toml\n[x](inside-a-block.md)\n```\n"
        "[ref]: ../CHANGELOG.md\n"
    )
    assert relative_links(page) == ["docs/privacy.md#modes", "img/logo one.png", "../CHANGELOG.md"]
