"""The whole loop a user lives, on this machine only.

A small Typer tool instrumented with ``instrument_typer`` runs a few commands
(on a terminal, the first one shows the one-time notice); ``luxonis-telemetry
inspect`` and ``status`` show what is pending; ``upload --dry-run --json``
shows the exact requests; ``upload`` delivers them to a PostHog-compatible
receiver on 127.0.0.1; then the same for an air-gapped machine with
``export`` and ``upload --from``; finally ``disable`` removes everything but
that choice. Everything happens in a temporary folder: your own spool and
settings are not touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from pathlib import Path

from luxonis_telemetry.testing import FakePostHog

APP = """
import typer
from luxonis_telemetry import TelemetryDefaults, get_or_init, instrument_typer
from luxonis_telemetry.cli import add_commands

app = typer.Typer()
telemetry = get_or_init(
    "demo_trainer",
    library_version="1.0.0",
    config=TelemetryDefaults(product_name="demo-trainer"),
)
instrument_typer(app, telemetry, allowlist=["epochs", "fmt"])
add_commands(app)  # demo-trainer telemetry status | inspect | disable ...


@app.command()
def train(epochs: int = 10, api_token: str = "not-recorded"):
    telemetry.capture("train.start", {"epochs": epochs, "model": "yolov8n"})
    typer.echo(f"trained for {epochs} epochs")


@app.command()
def export(fmt: str = "onnx"):
    if fmt not in ("onnx", "blob"):
        raise typer.Exit(2)
    typer.echo(f"exported to {fmt}")


if __name__ == "__main__":
    app()
"""


def banner(text: str) -> None:
    print(f"\n\033[1m$ {text}\033[0m", flush=True)


def run(args: list[str], env: dict[str, str], cwd: Path) -> int:
    banner(" ".join(Path(a).name if a == sys.executable else a for a in args))
    return subprocess.run(args, env=env, cwd=cwd, check=False).returncode


def main() -> None:
    cli = [sys.executable, "-m", "luxonis_telemetry"]
    with (
        tempfile.TemporaryDirectory(prefix="luxonis-telemetry-demo-") as folder,
        FakePostHog() as receiver,
    ):
        work = Path(folder)
        (work / "trainer.py").write_text(textwrap.dedent(APP))
        env = {
            **os.environ,
            "LUXONIS_TELEMETRY_SPOOL_DIR": str(work / "spool"),
            "LUXONIS_TELEMETRY_CONFIG_DIR": str(work / "config"),
            "LUXONIS_TELEMETRY_UPLOAD_ON_EXIT": "0",
        }
        for name in ("LUXONIS_TELEMETRY_ENABLED", "DO_NOT_TRACK", "LUXONIS_TELEMETRY_DEBUG"):
            env.pop(name, None)
        print(f"Demo folder: {work}\nPostHog-compatible receiver: {receiver.url}")

        trainer = [sys.executable, "trainer.py"]
        run([*trainer, "train", "--epochs", "3"], env, work)
        run([*trainer, "export", "--fmt", "blob"], env, work)
        run([*trainer, "export", "--fmt", "tflite"], env, work)

        run([*cli, "inspect"], env, work)
        run([*trainer, "telemetry", "status"], env, work)
        print("\n(no API key yet: upload leaves everything pending and says why)")
        run([*cli, "upload"], env, work)

        env["LUXONIS_TELEMETRY_API_KEY"] = "phc_demo_key_0123456789"
        env["LUXONIS_TELEMETRY_ENDPOINT"] = receiver.url
        print("\nThe exact requests an upload would make now (key masked), one per line:")
        run([*cli, "upload", "--dry-run", "--json"], env, work)
        run([*cli, "upload"], env, work)
        run([*cli, "status"], env, work)

        print("\nThe receiver got:")
        for event in receiver.events:
            props = event["properties"]
            shown = {k: v for k, v in props.items() if k in ("command", "success", "exit_code")}
            shown.update({k: v for k, v in props.items() if k in ("epochs", "fmt", "model")})
            print(f"  {event['timestamp'][:19]}  {event['event']:<14} {shown}")

        print("\nAir-gapped machine: export a bundle, carry it, upload it elsewhere.")
        run([*trainer, "train", "--epochs", "50"], env, work)
        bundle = work / "events.ltb.gz"
        run([*cli, "export", str(bundle), "--move"], env, work)
        run([*cli, "upload", "--from", str(bundle)], env, work)
        run([*cli, "upload", "--from", str(bundle)], env, work)

        counts = Counter(e["uuid"] for e in receiver.events)
        print(
            f"\nReceiver total: {len(receiver.events)} events, {len(counts)} distinct uuids, "
            f"{sum(c - 1 for c in counts.values())} duplicates."
        )

        print("\nTurning it off removes everything but the choice itself:")
        run([*trainer, "telemetry", "disable"], env, work)
        run([*trainer, "train", "--epochs", "1"], env, work)
        left = sorted(
            str(path.relative_to(work))
            for path in work.rglob("*")
            if path.is_file() and path.name != "trainer.py" and not path.name.endswith(".gz")
        )
        print(f"files left by luxonis-telemetry: {left}")


if __name__ == "__main__":
    main()
