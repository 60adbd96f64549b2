"""``python -m luxonis_telemetry`` is the ``luxonis-telemetry`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
