"""The one device policy (`device: auto | cpu | cuda | cuda:N`): every stage, Ray task and Ray Train
worker resolves it here; bf16 autocast follows `train.amp`, `evaluate.amp` and `infer.amp`."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """The device a process computes on: auto = CUDA when this process sees a GPU, else CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return dev


def wants_gpu(spec: str, cluster_gpus: float) -> bool:
    """Whether Ray workers and tasks take GPUs under `device: spec` on a cluster with `cluster_gpus`:
    cpu never, cuda always (an error without any), auto when the cluster has some."""
    if spec == "cpu":
        return False
    if spec == "auto":
        return cluster_gpus > 0
    if torch.device(spec).type == "cuda" and cluster_gpus <= 0:
        raise RuntimeError(f"device {spec!r} requested but the Ray cluster has no GPU")
    return torch.device(spec).type == "cuda"


def amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype under an `amp` setting (auto | bf16 | off): bf16 when asked (on CPU too: the
    AVX512-BF16/AMX path), or on CUDA under auto; None = fp32."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """torch.autocast on `device` with `dtype`, or no autocast when dtype is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
