"""One device policy: no library or stage code pins a device, every stage that builds models asks
`runtime.device` with `params.device`, Ray workers take GPUs as `device` says, bf16 as `train.amp` says."""
import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stylesync.config import Params
from stylesync.runtime import device as policy
from stylesync.train.personalize import CatalogEntry

ROOT = Path(__file__).resolve().parents[1] / "stylesync"


def test_no_code_pins_a_device():
    pins = []
    for path in ROOT.rglob("*.py"):
        if path.name == "device.py" and path.parent.name == "runtime":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "device"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                pins.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert pins == [], f"torch.device(<literal>) outside runtime/device.py: {pins}"


def _params(tmp_path) -> Params:
    p = Params()
    p.device = "cuda:7"  # a spec the test makes unavailable: only the policy may see it
    for k in ("data", "shards", "models", "metrics", "plots", "reports", "runs"):
        setattr(p.paths, k, str(tmp_path / k))
    p.tracking.enabled = False
    return p


def test_every_stage_asks_the_policy_first(tmp_path, monkeypatch):
    """With device cuda:7 on a machine without CUDA, the policy itself refuses: every stage must fail
    with its message, before any model or data work (no spy patched into modules by name)."""
    import stylesync.eval.av_offset as av_offset
    import stylesync.eval.evaluate as evaluate
    import stylesync.stages.render as render
    import stylesync.stages.sync as sync
    import stylesync.stages.train_backbone as train_backbone
    import stylesync.train.personalize as personalize
    import stylesync.train.syncnet as syncnet

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = _params(tmp_path)
    monkeypatch.setattr(train_backbone, "train", lambda params, hooks: {"step": 0})  # the Ray Train part: wants_gpu
    monkeypatch.setattr(train_backbone, "run_name", lambda params: "backbone-x")
    monkeypatch.setattr(render, "read_parquet", lambda path: SimpleNamespace(to_pylist=lambda: [
        {"clip_id": "a/1", "identity": "a", "split": "test", "path": "a.mp4"},
        {"clip_id": "b/1", "identity": "b", "split": "test", "path": "b.mp4"}]))
    calls = {
        "evaluate": lambda: evaluate.evaluate(p),
        "train_backbone (demo check)": lambda: train_backbone.train_backbone(p),
        "personalize": lambda: personalize.train_personal(p, CatalogEntry("id1", ["c1"])),
        "train_syncnet": lambda: syncnet.train_syncnet(p),
        "sync_check": lambda: av_offset.check_shard(p, "no-shard.tar"),
        "render": lambda: render.run(p, SimpleNamespace()),
        "sync": lambda: sync.run(p, SimpleNamespace(checkpoint=None, identity=None, face=None, landmarks=None,
                                                    video="v.mp4", audio="a.wav", output="o.mp4", start=0, end=None)),
    }
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match="device 'cuda:7' requested but CUDA is not available"):
            call()


def test_ray_workers_take_gpus_as_device_says():
    assert policy.wants_gpu("auto", 8) and not policy.wants_gpu("auto", 0)
    assert not policy.wants_gpu("cpu", 8) and policy.wants_gpu("cuda", 2) and policy.wants_gpu("cuda:1", 2)
    with pytest.raises(RuntimeError, match="no GPU"):
        policy.wants_gpu("cuda", 0)
    assert Params().train.use_gpu is None  # follows device unless set


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert policy.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        policy.resolve_device("cuda:0")


def test_amp_settings_give_bf16_only_where_asked():
    from stylesync.runtime.device import amp_dtype, autocast

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cuda) is None
    assert amp_dtype("auto", cuda) is torch.bfloat16 and amp_dtype("bf16", cpu) is torch.bfloat16
    x = torch.randn(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (x @ x).dtype is torch.bfloat16
    with autocast(cpu, None):
        assert (x @ x).dtype is torch.float32
