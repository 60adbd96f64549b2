"""``luxonis-telemetry inspect``: exactly what is waiting to leave this machine.

Three views of the same records: a table that uses the terminal's width,
``--full`` (every property and context key of each event, never cut) and
``--json`` (the stored records, one per line). Recorded text is always
shown literally: never read as markup, control characters escaped.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Optional

import typer

from .. import _quarantine
from .._reader import BadLine
from .._text import literal
from ._app import command, parse_since, require_spool, terminal_width, warn_unsafe_files

TYPE_CHECKING = False  # type checkers take this as True; importing typing costs ~2 ms
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..record import Record
    from ..spool import Spool

__all__ = ["inspect"]

TABLE_ROWS = 50


def _matching(
    spool: Spool, event: Optional[str], library: Optional[str], since: Optional[datetime]
) -> Iterator[Record]:
    for item in spool.iter_pending():
        if isinstance(item, BadLine):
            continue
        if event is not None and item["event"] != event:
            continue
        if library is not None and item["library"] != library:
            continue
        if since is not None:
            try:
                stamp = datetime.fromisoformat(item["timestamp"])
            except ValueError:
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=timezone.utc)
            if stamp < since:
                continue
        yield item


@command("inspect")
def inspect(
    as_json: bool = typer.Option(False, "--json", help="Print the stored records, one per line."),
    full: bool = typer.Option(
        False, "--full", help="Print every property and context key of each event, never cut."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=0, help=f"Show at most N events (table default {TABLE_ROWS}; 0: all)."
    ),
    event: Optional[str] = typer.Option(None, "--event", help="Only events with this name."),
    library: Optional[str] = typer.Option(None, "--library", help="Only this library's events."),
    since: Optional[str] = typer.Option(
        None, "--since", help="Only events after WHEN (2h, 3d, ISO time)."
    ),
    quarantined: bool = typer.Option(
        False, "--quarantined", help="Show the lines set aside as corrupt or refused instead."
    ),
) -> None:
    """List the events waiting to leave this machine (nothing is sent)."""
    spool = require_spool()
    after = parse_since(since) if since else None
    if quarantined:
        _quarantine_view(spool, limit)
    elif as_json or full:
        write = sys.stdout.write
        for shown, record in enumerate(_matching(spool, event, library, after)):
            if limit and shown >= limit:
                break
            write(_json_line(record) if as_json else _full(record))
        sys.stdout.flush()
    else:
        _table(_matching(spool, event, library, after), TABLE_ROWS if limit is None else limit)
    warn_unsafe_files(spool)


def _json_line(record: Record) -> str:
    """The stored record; ``ensure_ascii`` keeps every control character escaped."""
    return json.dumps(record, separators=(",", ":")) + "\n"


def _value(value: Any) -> str:
    text = (
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    )
    return literal(text)


def _full(record: Record) -> str:
    lines = [
        f"{literal(record['timestamp'])}  {literal(record['library'])}  {literal(record['event'])}"
        f"  ({record['type']}, uuid {literal(record['uuid'])})",
        f"  distinct_id: {literal(record['distinct_id'])}",
        "  properties:" + ("" if record["properties"] else " (none)"),
    ]
    lines += [f"    {literal(k)}: {_value(v)}" for k, v in sorted(record["properties"].items())]
    lines.append("  context:")
    lines += [f"    {literal(k)}: {_value(v)}" for k, v in sorted(record["context"].items())]
    return "\n".join(lines) + "\n\n"


def _table(records: Iterator[Record], limit: int) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(soft_wrap=False, width=terminal_width(), highlight=False, markup=False)
    totals: dict[tuple[str, str], int] = {}
    rows: list[tuple[str, str, str, str]] = []
    shown = total = 0
    header = True

    def print_rows() -> None:
        nonlocal header, rows
        if not rows:
            return
        table = Table(box=None, show_header=header, pad_edge=False, expand=True)
        table.add_column("time (UTC)", min_width=19, no_wrap=True)
        table.add_column("library", min_width=8, max_width=20, no_wrap=True, overflow="ellipsis")
        table.add_column("event", min_width=10, max_width=32, no_wrap=True, overflow="ellipsis")
        table.add_column("properties", min_width=20, ratio=1, no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        header, rows = False, []

    for record in records:
        total += 1
        key = (record["library"], record["event"])
        totals[key] = totals.get(key, 0) + 1
        if limit == 0 or shown < limit:
            shown += 1
            properties = json.dumps(
                record["properties"], separators=(",", "="), sort_keys=True, ensure_ascii=False
            )
            rows.append(
                (
                    literal(record["timestamp"][:19].replace("T", " ")),
                    literal(record["library"]),
                    literal(record["event"]),
                    literal(properties[1:-1]),
                )
            )
            if len(rows) >= 200:
                print_rows()
    print_rows()
    if total == 0:
        console.print("No pending events.")
        return
    if shown < total:
        console.print(f"… {total - shown} more not shown (--limit 0 shows all)")
    summary = Table(title=f"{total} pending events", box=None, pad_edge=False)
    summary.add_column("library")
    summary.add_column("event")
    summary.add_column("count", justify="right")
    for (lib, name), count in sorted(totals.items()):
        summary.add_row(Text(literal(lib)), Text(literal(name)), str(count))
    console.print(summary)
    console.print("Whole records: luxonis-telemetry inspect --full (or --json)")


def _quarantine_view(spool: Spool, limit: Optional[int]) -> None:
    shown = 0
    for line in _quarantine.iter_entries(spool.path):
        if limit and shown >= limit:
            break
        sys.stdout.write(literal(line) + "\n")
        shown += 1
    if shown == 0:
        typer.echo("Nothing quarantined.")
