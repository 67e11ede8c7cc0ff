"""Compact storage of a personal model: Delta P (fp16 and/or low-rank) + MLP_dw, and loading it
back onto the backbone it was trained from (checked by the backbone's hash)."""
from __future__ import annotations

from typing import Optional

import torch

P, W = "delta_p/", "mlp_dw/"


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    """Drop leading singleton dims, then (rows, rest): a modulated conv (1, out, in, k, k) -> (out, in*k*k)."""
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    return t.reshape(t.shape[0], -1)


def pack_delta(shifts: dict[str, torch.Tensor], mlp_dw: dict[str, torch.Tensor], dtype: str = "float16",
               rank: Optional[int] = None) -> dict[str, torch.Tensor]:
    """-> flat dict for safetensors. A matrix-shaped shift whose rank-r factors are smaller than the
    matrix is stored as `.u` (rows x r) and `.v` (r x cols)."""
    dt = getattr(torch, dtype)
    out: dict[str, torch.Tensor] = {}
    for name, s in shifts.items():
        s = s.detach().float().cpu()
        m = _as_matrix(s) if s.ndim >= 2 else None
        if rank is not None and m is not None and rank * (m.shape[0] + m.shape[1]) < m.numel():
            u, sv, vh = torch.linalg.svd(m, full_matrices=False)
            out[f"{P}{name}.u"] = (u[:, :rank] * sv[:rank]).to(dt).contiguous()
            out[f"{P}{name}.v"] = vh[:rank].to(dt).contiguous()
            out[f"{P}{name}.shape"] = torch.tensor(list(s.shape), dtype=torch.int64)
        else:
            out[f"{P}{name}"] = s.to(dt).contiguous()
    for name, w in mlp_dw.items():
        out[f"{W}{name}"] = w.detach().float().cpu().contiguous()  # small: kept in full precision
    return out


def unpack_delta(packed: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (Delta P shifts in float32, MLP_dw state)."""
    shifts, mlp = {}, {}
    for key, t in packed.items():
        if key.startswith(W):
            mlp[key[len(W):]] = t.float()
        elif key.endswith(".u"):
            name = key[len(P):-2]
            shape = tuple(packed[f"{P}{name}.shape"].tolist())
            shifts[name] = (t.float() @ packed[f"{P}{name}.v"].float()).reshape(shape)
        elif key.startswith(P) and not key.endswith((".v", ".shape")):
            shifts[key[len(P):]] = t.float()
    return shifts, mlp


def packed_bytes(packed: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in packed.values())
