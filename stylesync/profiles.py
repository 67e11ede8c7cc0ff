"""Params profiles: an overlay YAML (e.g. params/paper.yaml) applied on top of params.yaml.

    stylesync params --profile params/paper.yaml -S train.steps=10   # the merged, validated params (YAML)
    dvc exp run $(stylesync params --profile params/paper.yaml --dvc-args)   # as a DVC experiment
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, Params, load_params, read_tree, to_dict


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
        sets = [f"{k}={json.dumps(v)}" for k, v in leaves(overlay)] + args.set
        print(" ".join(f"-S {shlex.quote(s)}" for s in sets))
    else:
        print(yaml.safe_dump(to_dict(merged), sort_keys=False), end="")
    return 0
