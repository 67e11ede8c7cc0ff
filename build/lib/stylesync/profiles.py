"""Params profiles: an overlay YAML (e.g. params/paper.yaml) applied on top of params.yaml.

    stylesync params --profile params/paper.yaml -S train.steps=10   # the merged, validated params (YAML)
    eval "dvc exp run $(stylesync params --profile params/paper.yaml --dvc-args)"   # as a DVC experiment

`--dvc-args` prints shell-quoted `-S key=value` words in the override grammar `dvc exp run -S`
parses (Hydra's: `{k:v}` mappings, `[a,b]` lists, quoted strings, null), hence the `eval`.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, Params, load_params, read_tree, to_dict


def hydra_value(v: Any) -> str:
    """A value in Hydra's override grammar (what `dvc exp run -S` parses)."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{hydra_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a double-quoted string (escapes as Hydra reads them)


def leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every non-mapping value of a raw tree."""
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in leaves(v, f"{prefix}{k}.")]
    return [(prefix[:-1], tree)]


def load_profile(params_path: str | Path, profile: str | Path,
                 overrides: list[str] | None = None) -> tuple[Params, dict]:
    """(params.yaml + the profile + the overrides, validated; the profile's own tree)."""
    return load_params(params_path, overrides, profile=profile), read_tree(profile)


def run(params: Params, args) -> int:
    if not args.profile:
        print(yaml.safe_dump(to_dict(params), sort_keys=False), end="")
        return 0
    try:
        merged, overlay = load_profile(args.params, args.profile, args.set)
    except ConfigError as e:
        print(f"stylesync: bad params: {e}", file=sys.stderr)
        return 2
    if args.dvc_args:
        sets = [f"++{k}={hydra_value(v)}" for k, v in leaves(overlay)] + args.set  # ++: set, or add if params.yaml lacks it
        print(" ".join(f"-S {shlex.quote(s)}" for s in sets))
    else:
        print(yaml.safe_dump(to_dict(merged), sort_keys=False), end="")
    return 0
