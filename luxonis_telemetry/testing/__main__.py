"""``python -m luxonis_telemetry.testing [PORT]``: a PostHog receiver in the foreground.

Each stored event is printed as one JSON line on stdout; each refused request
as one line on stderr saying why, which is what a person pointing a tool at it
wants to see.
"""

from __future__ import annotations

import json
import sys
import time

from ._fake_posthog import FakePostHog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

USAGE = "usage: python -m luxonis_telemetry.testing [PORT]"


def main(argv: Optional[list[str]] = None) -> int:
    """Serve until interrupted; 2 on a usage error."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and not (args[0].isascii() and args[0].isdigit())):
        print(USAGE, file=sys.stderr)
        return 2
    with FakePostHog(int(args[0]) if args else 0) as server:
        print(f"PostHog-compatible receiver on {server.url}", flush=True)
        seen = 0
        try:
            while True:
                time.sleep(0.2)
                arrived = server.history[seen:]
                seen += len(arrived)
                for request in arrived:
                    for event in request.events:
                        print(json.dumps(event), flush=True)
                    if request.status != 200:
                        print(
                            f"POST {request.path} -> {request.status}: {request.reason}",
                            file=sys.stderr,
                            flush=True,
                        )
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
