"""`stylesync <command>`: every command reads params.yaml (or --params) and takes `-S key=value` overrides.

Commands are declared here (arguments and help); their code is imported only when they run, so
`stylesync --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, anchored, load_params

log = logging.getLogger("stylesync")
# the project's own error types whose message already says what failed (by name: no heavy imports here)
PLAIN_ERRORS = {"MediaError", "CheckpointError", "PersonalizeError", "NoFaceError"}


@dataclass
class Command:
    target: str  # "module:function", called as function(params, args) -> int | None
    help: str
    args: list[tuple[tuple, dict]] = field(default_factory=list)
    epilog: str = ""  # usage notes under the arguments of `--help`


def arg(*flags, **kw) -> tuple[tuple, dict]:
    return flags, kw


COMMANDS: dict[str, Command] = {
    "synth": Command("stylesync.stages.synth:run", "generate the synthetic talking-face corpus (VoxCeleb2 layout)"),
    "manifest": Command(
        "stylesync.stages.manifest:run", "scan VoxCeleb2 / LRW / synthetic roots into data/manifest.parquet",
        [arg("-o", "--output", help="output parquet (default: paths.manifest)")],
    ),
    "preprocess": Command(
        "stylesync.stages.preprocess:run", "manifest -> aligned faces + mel in WebDataset shards (Ray Data)",
        [arg("--executor", choices=["ray", "local"], default="ray", help="Ray Data (default) or in-process")],
    ),
    "train-syncnet": Command("stylesync.stages.train_syncnet:run", "train the expert SyncNet on the shards"),
    "sync-check": Command(
        "stylesync.stages.sync_check:run", "A/V offset and sync confidence of every clip -> data/sync.parquet",
        [arg("--executor", choices=["ray", "local"], default="ray", help="Ray tasks over the shards (default) or in-process")],
    ),
    "train": Command("stylesync.stages.train_backbone:run", "train the generalized StyleSync backbone on Ray Train"),
    "personalize": Command(
        "stylesync.stages.personalize:run", "personalize the backbone for every identity of the speaker catalog (Ray tasks)",
        [arg("--executor", choices=["ray", "local"], default="ray", help="Ray tasks (default) or in-process")],
        epilog="which identities: all test identities of the shards, or a table (-S personalize.catalog=cat.csv:\n"
               "  identity[, clips, held_out, seconds, time_limit_s]), restricted with\n"
               "  -S 'personalize.identities=[id00019,id00020]'\n"
               "budgets: -S personalize.time_limit_s=600 (per identity), -S personalize.seconds=10 (of the person's\n"
               "  video), -S personalize.epochs=5\n"
               "exit 1 when any requested identity failed or is unknown (reasons printed; models/personal/catalog.parquet);\n"
               "  -S personalize.allow_partial=true accepts a partial catalog",
    ),
    "evaluate": Command("stylesync.stages.evaluate:run", "the paper's Table 1 protocol: models side by side -> metrics/eval.json"),
    "sync": Command(
        "stylesync.stages.sync:run", "lip-sync a video (or a folder of videos) to an audio track",
        [arg("--video", required=True, help="video file or folder"),
         arg("--audio", required=True, help="audio (or video) file, or a folder matched by file name"),
         arg("-o", "--output", required=True, help="output mp4 (a folder in batch mode)"),
         arg("--identity", help="use the personal model of this identity (models/personal/<identity>)"),
         arg("--checkpoint", help="a generator directory (default: models/backbone/generator)"),
         arg("--landmarks", help="precomputed landmarks (.npy, one row per source frame) instead of face detection"),
         arg("--face", type=int, default=None,
             help="which face track to follow in each shot, by size (0 = the largest; default landmarks.face)"),
         arg("--start", type=float, default=0.0, help="seconds: start of the part to process"),
         arg("--end", type=float, default=None, help="seconds: end of the part to process")],
    ),
    "render": Command("stylesync.stages.render:run", "lip-sync demo test videos to other identities' audio (renders/)"),
    "params": Command(
        "stylesync.profiles:run", "print the resolved params, or a profile (e.g. params/paper.yaml) applied",
        [arg("--profile", help="overlay YAML applied on top of --params"),
         arg("--dvc-args", action="store_true", help="print the overlay as `-S key=value` for `dvc exp run`")],
    ),
    "model-card": Command(
        "stylesync.stages.model_card:run", "parameter counts and FLOPs of the configured models",
        [arg("-o", "--output", help="output JSON (default: <paths.metrics>/model.json)")],
    ),
}


def _set_runtime_defaults() -> None:
    """Environment defaults for the tools we drive (offline, no telemetry); user values win."""
    for k, v in {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled",
                 "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore::DeprecationWarning"}.items():
        os.environ.setdefault(k, v)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylesync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=os.environ.get("STYLESYNC_LOG", "INFO"),
                        help="logging level (default INFO)")
    parser.add_argument("--debug", action="store_true", default=os.environ.get("STYLESYNC_DEBUG", "") not in ("", "0"),
                        help="show the full traceback of an error (also STYLESYNC_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=cmd.epilog or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a param, e.g. -S train.steps=10 (repeatable)")
        for flags, kw in cmd.args:
            p.add_argument(*flags, **kw)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _set_runtime_defaults()
    try:
        params = load_params(args.params, args.set)
    except ConfigError as e:
        print(f"stylesync: bad params: {e}", file=sys.stderr)
        return 2
    home = Path(args.params).resolve().parent
    if home != Path.cwd().resolve():  # relative paths (params and -S) mean the params file's folder
        params = anchored(params, home)
        log.info("relative paths of %s are taken from %s", args.params, home)
    module, func = COMMANDS[args.command].target.split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(params, args) or 0)
    except KeyboardInterrupt:
        print(f"stylesync {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stylesync params ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if args.debug:
            raise
        print(f"stylesync {args.command}: error: {error_line(e)} (--debug or STYLESYNC_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def error_line(e: BaseException) -> str:
    """One line that names what went wrong: the message (its first line), with the exception's type
    where the message alone would not say what kind of failure it is."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    plain = (FileNotFoundError, PermissionError, ValueError, ConfigError)
    if msg and (isinstance(e, plain) or type(e).__name__ in PLAIN_ERRORS):
        return msg
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
