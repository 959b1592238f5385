"""Run the ComfyUI double as a process, launched like ComfyUI:

    python tests/comfy_double/main.py --listen 127.0.0.1 --port 8188 --disable-auto-launch \
        [--disable-metadata] [--verbose LEVEL] [--log-stdout] \
        [--input-directory X --output-directory Y --temp-directory Z] [other ComfyUI flags]

Unknown flags (--cpu, --lowvram ...) are accepted and ignored. Without directory flags the
current directory is the root (input/, output/, temp/ are created there).
Environment: COMFY_DOUBLE_BOOT_DELAY_S (seconds to wait before listening, like ComfyUI's boot),
COMFY_DOUBLE_FAULTS (a JSON object of Faults fields) and COMFY_DOUBLE_VERSION (the ComfyUI
version to speak: 0.3.64, the default, or 0.33.0, whose log lines are coloured).
Logging follows ComfyUI: stderr, or stdout for everything below ERROR with --log-stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import ClassVar

_HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    # Run as a script: import the package from the repository root, and keep this folder's
    # module names (server, files, ...) from shadowing anything.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parents[1]))

from tests.comfy_double.double import ComfyDouble
from tests.comfy_double.faults import Faults
from tests.comfy_double.versions import DEFAULT, Version, version

log = logging.getLogger("comfy_double")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", add_help=True)
    parser.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--disable-auto-launch", action="store_true")
    parser.add_argument("--disable-metadata", action="store_true")
    parser.add_argument("--verbose", nargs="?", const="DEBUG", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    parser.add_argument("--log-stdout", action="store_true")
    parser.add_argument("--input-directory")
    parser.add_argument("--output-directory")
    parser.add_argument("--temp-directory")
    parser.add_argument("--base-directory")
    parser.add_argument("--cache-none", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    args.ignored = unknown
    return args


class _ColouredFormatter(logging.Formatter):
    """ComfyUI 0.33's lines: the level tag in colour, then the message (log_lines.json)."""

    COLOURS: ClassVar[dict[str, str]] = {
        "DEBUG": "\x1b[36m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m",
        "ERROR": "\x1b[1m\x1b[31m", "CRITICAL": "\x1b[1m\x1b[35m"}

    def format(self, record: logging.LogRecord) -> str:
        colour = self.COLOURS.get(record.levelname, "")
        return f"{colour}[{record.levelname}]\x1b[0m {super().format(record)}"


def setup_logging(level: str, use_stdout: bool, speaks: Version = DEFAULT) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    formatter = (_ColouredFormatter("%(message)s") if speaks.coloured_logs
                 else logging.Formatter("%(message)s"))
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(formatter)
    if use_stdout:
        errors.addFilter(lambda record: record.levelno >= logging.ERROR)
        lesser = logging.StreamHandler(sys.stdout)
        lesser.setFormatter(formatter)
        lesser.addFilter(lambda record: record.levelno < logging.ERROR)
        root.addHandler(lesser)
    root.addHandler(errors)


async def serve(args: argparse.Namespace, argv: list[str], speaks: Version = DEFAULT) -> None:
    base = Path(args.base_directory) if args.base_directory else Path.cwd()
    double = ComfyDouble(
        base, port=args.port, host=args.listen.split(",")[0],
        input_dir=Path(args.input_directory) if args.input_directory else None,
        output_dir=Path(args.output_directory) if args.output_directory else None,
        temp_dir=Path(args.temp_directory) if args.temp_directory else None,
        disable_metadata=args.disable_metadata, argv=["main.py", *argv], version=speaks)
    faults_json = os.environ.get("COMFY_DOUBLE_FAULTS", "")
    if faults_json:
        injected = Faults.from_json(faults_json)
        for name, value in vars(injected).items():
            setattr(double.faults, name, value)
        log.warning("ComfyUI double faults: %s", faults_json)
    double.caching = not args.cache_none

    async def crash() -> None:
        log.error("ComfyUI double: crashing on purpose (fault crash_on_prompt)")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(3)

    double.on_crash = crash
    log.info("Checkpoint files will always be loaded safely.")
    log.info("Python version: %s", sys.version)
    log.info("ComfyUI version: %s", speaks.name)
    log.info("ComfyUI double (not ComfyUI): root %s", base)
    if args.ignored:
        log.info("ignoring flags: %s", " ".join(args.ignored))
    delay = float(os.environ.get("COMFY_DOUBLE_BOOT_DELAY_S", "0") or 0)
    if delay > 0:
        await asyncio.sleep(delay)
    log.info("Starting server\n")
    url = await double.open()
    log.info("To see the GUI go to: %s", url)
    await asyncio.Event().wait()


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    speaks = version(os.environ.get("COMFY_DOUBLE_VERSION") or DEFAULT.name)
    setup_logging(args.verbose, args.log_stdout, speaks)
    try:
        asyncio.run(serve(args, argv, speaks))
    except KeyboardInterrupt:
        log.info("\nStopped server")


if __name__ == "__main__":
    main()
