"""Params profiles: an overlay YAML (e.g. params/paper.yaml) applied on top of params.yaml.

    stylesync params --profile params/paper.yaml               # the merged, validated params (YAML)
    dvc exp run $(stylesync params --profile params/paper.yaml --dvc-args)   # as a DVC experiment
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, Params, from_dict, to_dict, validate


def merge(base: dict, overlay: dict) -> dict:
    """Recursive dict merge; overlay wins; lists are replaced whole."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in leaves(v, f"{prefix}{k}.")]
    return [(prefix[:-1], tree)]


def load_profile(params_path: str | Path, profile: str | Path) -> tuple[Params, dict]:
    base = yaml.safe_load(Path(params_path).read_text()) or {}
    overlay = yaml.safe_load(Path(profile).read_text()) or {}
    if not isinstance(overlay, dict):
        raise ConfigError(f"{profile}: the top level must be a mapping")
    params = from_dict(Params, merge(base, overlay))
    validate(params)
    return params, overlay


def run(params: Params, args) -> int:
    if not args.profile:
        print(yaml.safe_dump(to_dict(params), sort_keys=False), end="")
        return 0
    merged, overlay = load_profile(args.params, args.profile)
    if args.dvc_args:
        print(" ".join(f"-S {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in leaves(overlay)))
    else:
        print(yaml.safe_dump(to_dict(merged), sort_keys=False), end="")
    return 0
