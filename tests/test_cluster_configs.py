"""cluster/ configs, docs/CLUSTER.md commands and the docs/SCALE.md bill: fast checks of real content."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from stylesync.cli import COMMANDS
from stylesync.config import ConfigError, Params, apply_overrides, from_dict, load_params, to_dict, validate
from stylesync.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
STAGES = {"manifest", "preprocess", "train-syncnet", "train", "personalize", "evaluate", "all"}
REQUIRED_ENV = {"RAY_AUTH_MODE", "MLFLOW_TRACKING_URI", "DVC_NO_ANALYTICS", "MLFLOW_DISABLE_TELEMETRY", "NUMBA_CACHE_DIR"}


def load(rel: str) -> dict:
    return yaml.safe_load((ROOT / rel).read_text())


def paper_tree() -> dict:
    return to_dict(load_profile(ROOT / "params.yaml", ROOT / "params/paper.yaml")[0])


def check_overrides(overrides: list[str]) -> Params:
    """The paper params with these overrides: unknown keys or wrong types raise ConfigError."""
    params = from_dict(Params, apply_overrides(paper_tree(), overrides))
    validate(params)
    return params


# ------------------------------------------------------------------------------------ YAML + schemas
def test_every_yaml_under_cluster_parses():
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert {f.relative_to(CLUSTER).as_posix() for f in files} >= {
        "aws.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"}
    for f in files:
        docs = list(yaml.safe_load_all(f.read_text()))
        assert docs and all(isinstance(d, dict) and d for d in docs), f


def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    if not path.exists():
        pytest.skip(f"this ray ({path.parent}) ships no ray-schema.json to validate against")
    return json.loads(path.read_text())


def test_launcher_config_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg, schema = load("cluster/aws.yaml"), ray_schema()
    jsonschema.validate(cfg, schema)
    validate_config(prepare_config(cfg))  # Ray's own check, after filling in the AWS defaults
    bad = load("cluster/aws.yaml")
    bad["available_node_types"]["gpu_worker"]["min_worker"] = 1  # a typo the schema must catch
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_launcher_node_types():
    cfg = load("cluster/aws.yaml")
    types = cfg["available_node_types"]
    assert cfg["provider"]["type"] == "aws" and cfg["idle_timeout_minutes"] > 0
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}  # the head runs drivers only
    assert "--num-cpus=0" in " ".join(cfg["head_start_ray_commands"])
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    cpu = [t for n, t in types.items() if n != cfg["head_node_type"] and not t["resources"].get("GPU")]
    assert gpu and cpu
    for t in gpu + cpu:
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
        assert t["node_config"]["IamInstanceProfile"]  # workers read and write the bucket
    assert sum(t["max_workers"] for t in gpu + cpu) <= cfg["max_workers"]
    setup = "\n".join(cfg["setup_commands"])
    assert "download.pytorch.org/whl/cu" in setup and "torch==" in setup
    assert "-c constraints.txt" in setup and 'pip install -q -c constraints.txt -e ".[s3]"' in setup
    assert any(k.endswith("/weights") and v == "./weights" for k, v in cfg["file_mounts"].items())
    image = cfg["docker"]["image"]
    assert ray_pin() in image and image.endswith("-gpu")


def ray_pin() -> str:
    m = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert m, "constraints.txt pins ray"
    return m.group(1)


# ------------------------------------------------------------------------------------ KubeRay
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
                   "headServiceAnnotations", "suspend"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                "scaleStrategy"}
AUTOSCALER = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
              "idleTimeoutSeconds", "upscalingMode"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
               "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
               "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule"}


def check_cluster_spec(spec: dict) -> None:
    """Field names of KubeRay's ray.io/v1 types (raycluster_types.go) and what this project needs."""
    assert set(spec) <= RAYCLUSTER_SPEC and set(spec["headGroupSpec"]) <= HEAD_GROUP
    assert set(spec["autoscalerOptions"]) <= AUTOSCALER
    assert spec["rayVersion"] == ray_pin() and spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["num-gpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    pods = [head["template"]["spec"]] + [g["template"]["spec"] for g in groups.values()]
    for g in groups.values():
        assert set(g) <= WORKER_GROUP and {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(g)
        assert 0 <= g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"] and g["maxReplicas"] >= 1
    gpu = [g for g in groups.values() if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert len(gpu) == 1 and gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert len(groups) - len(gpu) >= 1  # a CPU group for preprocessing
    for pod in pods:
        c = pod["containers"][0]
        assert ray_pin() in c["image"]
        names = {e["name"] for e in c["env"]}
        assert {"RAY_AUTH_MODE", "DVC_NO_ANALYTICS", "MLFLOW_DISABLE_TELEMETRY", "NUMBA_CACHE_DIR"} <= names
        creds = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(creds)
        assert any(m["mountPath"] == "/weights" for m in c["volumeMounts"])


def test_kuberay_raycluster():
    rc = load("cluster/kuberay/raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    check_cluster_spec(rc["spec"])


def test_kuberay_rayjob():
    from ray.runtime_env import RuntimeEnv

    job = load("cluster/kuberay/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["rayClusterSpec"] == load("cluster/kuberay/raycluster.yaml")["spec"]  # one cluster, no drift
    check_cluster_spec(spec["rayClusterSpec"])
    assert re.search(r"cluster/pipeline\.sh all\b", spec["entrypoint"])
    env = RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))  # Ray's own validation
    assert REQUIRED_ENV | {"BUCKET", "WEIGHTS"} <= set(env.env_vars())
    check_installs_project(env)


def check_installs_project(env) -> None:
    pip = env["pip"]
    pkgs = pip["packages"]
    assert any(re.fullmatch(r"stylesync\[s3\] @ git\+https://\S+\.git@[\w.\-]+", p) for p in pkgs), pkgs
    assert any(p.startswith("torch==") for p in pkgs)
    assert any("download.pytorch.org/whl/cu" in o for o in pip["pip_install_options"])


def test_runtime_env():
    from ray.runtime_env import RuntimeEnv

    raw = load("cluster/runtime_env.yaml")
    env = RuntimeEnv(**raw)
    check_installs_project(env)
    assert REQUIRED_ENV <= set(env.env_vars())
    assert raw["working_dir"] == "." and {".venv", "data", "models", "runs", ".git", "weights"} <= set(raw["excludes"])


def test_one_repo_and_ref_everywhere():
    """The launcher, the runtime env and the RayJob install the same code."""
    found = {}
    for rel in ("cluster/aws.yaml", "cluster/runtime_env.yaml", "cluster/kuberay/rayjob.yaml"):
        text = (ROOT / rel).read_text()
        urls = set(re.findall(r"(https://[\w.\-/]+\.git)", text))
        refs = set(re.findall(r"\.git@([\w.\-]+)", text)) | set(re.findall(r"checkout --quiet ([\w.\-]+)", text)) \
            | set(re.findall(r"--branch ([\w.\-]+)", text))
        assert len(urls) == 1 and len(refs) == 1, (rel, urls, refs)
        found[rel] = (urls.pop(), refs.pop())
    assert len(set(found.values())) == 1, found
    assert found["cluster/aws.yaml"][1] not in {"main", "master", "HEAD"}  # a pinned ref, not a branch tip


# ------------------------------------------------------------------------------------ pipeline.sh
def test_pipeline_script_overrides_are_real_params(tmp_path):
    """Run cluster/pipeline.sh with a recording `stylesync`: its params file + overrides load and validate."""
    real = shutil.which("stylesync") or str(Path(sys.executable).with_name("stylesync"))
    shim = tmp_path / "bin" / "stylesync"
    shim.parent.mkdir()
    shim.write_text(f"""#!/bin/sh
if [ "$1" = params ]; then exec "{real}" "$@"; fi
echo "$1" > "$SHIM_OUT/command"; shift
while [ $# -gt 0 ]; do
  if [ "$1" = --params ]; then cp "$2" "$SHIM_OUT/params.yaml"; shift 2; continue; fi
  printf '%s\\0' "$1" >> "$SHIM_OUT/args"; shift
done
""")
    shim.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "SHIM_OUT": str(out),
           "BUCKET": "s3://bucket/run1", "RAW": "gs://raw-data", "WEIGHTS": "/w", "MLFLOW_TRACKING_URI": "http://m:5000"}
    r = subprocess.run(["bash", str(CLUSTER / "pipeline.sh"), "train", "-S", "train.steps=7"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "command").read_text().strip() == "train"
    args = (out / "args").read_text().split("\0")[:-1]
    assert args[::2] == ["-S"] * (len(args) // 2)
    p = load_params(out / "params.yaml", args[1::2])
    assert p.train.steps == 7 and p.train.use_gpu and p.model.generator.size == 256  # extra override wins; paper profile
    assert (p.ray.address, p.paths.shards, p.paths.models, p.paths.runs, p.paths.manifest) == (
        "auto", "s3://bucket/run1/shards", "s3://bucket/run1/models", "s3://bucket/run1/runs",
        "s3://bucket/run1/manifest.parquet")
    assert [(s.dataset, s.root, s.fraction) for s in p.manifest.sources] == [
        ("lrw", "gs://raw-data/lrw", 1.0), ("voxceleb2", "gs://raw-data/voxceleb2", 0.2)]
    assert p.paths.vgg19_weights == "/w/vgg19-dcbb9e9d.pth" and p.tracking.tracking_uri == "http://m:5000"
    assert p.train.cpus_per_worker * p.train.num_workers <= load("cluster/aws.yaml")[
        "available_node_types"]["gpu_worker"]["resources"]["CPU"]  # Ray Train's workers fit one GPU node
    bad = subprocess.run(["bash", str(CLUSTER / "pipeline.sh"), "train"], cwd=ROOT, capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k != "BUCKET"})
    assert bad.returncode != 0 and "BUCKET" in bad.stderr


# ------------------------------------------------------------------------------------ docs/CLUSTER.md
def test_cluster_doc_commands_are_real():
    text = (ROOT / "docs/CLUSTER.md").read_text()
    subs = re.findall(r"\bstylesync (?!<)([a-z][\w-]*)", text)
    assert subs and set(subs) <= set(COMMANDS), set(subs) - set(COMMANDS)
    stages = re.findall(r"cluster/pipeline\.sh ([a-z][\w-]*)", text)
    assert {"manifest", "preprocess", "train-syncnet", "train", "personalize", "evaluate", "all"} <= set(stages) <= STAGES
    for f in re.findall(r"(cluster/[\w/.-]+\.(?:yaml|sh))", text):
        assert (ROOT / f).exists(), f
    overrides = [m.strip("'\"") for m in re.findall(r"-S\s+('[^']*'|\"[^\"]*\"|[^\s`]+)", text)]
    overrides = [o.split(":", 1)[1] if o.startswith("params.yaml:") else o for o in overrides]
    keys = {o.split("=", 1)[0] for o in overrides}
    assert {"ray.address", "personalize.catalog", "manifest.sources", "train.steps"} <= keys
    for o in overrides:
        try:
            check_overrides([o])
        except ConfigError as e:
            pytest.fail(f"docs/CLUSTER.md: -S {o}: {e}")


def test_override_check_bites():
    with pytest.raises(ConfigError):
        check_overrides(["train.stepz=3"])
    with pytest.raises(ConfigError):
        check_overrides(["train.steps=$STEPS"])


# ------------------------------------------------------------------------------------ docs/SCALE.md
def scale_plan():
    spec = importlib.util.spec_from_file_location("scale_plan", ROOT / "bench/scale_plan.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve their annotations through the module
    spec.loader.exec_module(mod)
    return mod


def number(s: str) -> float:
    s = s.replace(",", "")
    return float(s[:-1]) * 1e6 if s.endswith("M") else float(s)


def test_scale_doc_is_the_scripts_output():
    sp = scale_plan()
    doc = (ROOT / "docs/SCALE.md").read_text()
    block = re.search(r"<!-- BEGIN bench/scale_plan.py -->\n(.*?)\n<!-- END bench/scale_plan.py -->", doc, re.S)
    assert block, "docs/SCALE.md has the generated block"
    assert block.group(1) == sp.markdown(), "regenerate: python bench/scale_plan.py"
    r = subprocess.run([sys.executable, str(ROOT / "bench/scale_plan.py")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == block.group(1)
    # the totals quoted in the doc, parsed, equal the script's within their printed precision
    plan = {(s, item): v for s, item, v, *_ in sp.plan()}
    totals = re.findall(r"^\| Totals \| (.+?) \| ([\d,.]+M?) \| ", block.group(1), re.M)
    assert len(totals) == 3
    for item, shown in totals:
        assert number(shown) == pytest.approx(plan[("Totals", item)], rel=5e-3)
    assert plan[("Totals", totals[0][0])] == pytest.approx(sum(
        v for (s, item), v in plan.items() if (s, item) in {
            ("Preprocessing", "face-alignment on H100, paper set"), ("SyncNet expert", "on the head's L40S (fp32 on TF32)"),
            ("Backbone", "on H100/H200, bf16"), ("Personalization", "10,000 speakers at 256")}))
    # every bold figure in the prose is a value of the table
    prose = doc[: block.start()] + doc[block.end():]
    values = {sp.f(v) for v in plan.values()}
    bold = re.findall(r"\*\*([\d][\d,.]*M?)\*\*", prose)
    assert len(bold) >= 15 and set(bold) <= values, set(bold) - values
    assert all(basis in ("measured", "projected") for *_, basis, _ in sp.plan())


def test_scale_inputs_match_benchmarks():
    sp = scale_plan()
    bm = (ROOT / "BENCHMARKS.md").read_text()
    v = {k: i.value for k, i in sp.INPUTS.items()}
    assert re.search(rf"preprocessing, precomputed landmarks, per core \| {v['preprocess_fps_core']:g} frames/s", bm)
    assert re.search(rf"face-alignment backend .*\| {v['fa_cpu_s_frame']:g} s/frame", bm)
    assert re.search(rf"\| paper \| 256 \| 1 \| [\d.]+ \| [\d.]+ \| {v['train_tflop_step']:g} \|", bm)
    assert re.search(rf"loader, 256 .*\| {v['loader_core']:g} samples/s/core", bm)
    assert re.search(rf"JPEG q95 \| {v['jpeg_bytes'] / 1000:g} KB/frame", bm)
    assert re.search(rf"\| [\d.]+ / {v['delta_f16_mib']:g} / {v['delta_r16_mib']:g} / [\d.]+ MiB", bm)
    runs = [float(x) for x in re.search(r"\| ([\d.]+) s and ([\d.]+) s; peak RSS", bm).groups()]
    assert v["demo_identity_s"] == pytest.approx(sum(runs) / len(runs), abs=0.05)
    assert all(sp.INPUTS[k].kind == "measured" for k in ("preprocess_fps_core", "fa_cpu_s_frame", "jpeg_bytes"))


def test_scale_flop_counts_match_a_recount():
    sp = scale_plan()
    for k, counted in sp.count().items():
        assert sp.INPUTS[k].value == pytest.approx(counted, rel=5e-3), k
