#!/usr/bin/env bash
# One stage (or all) of the paper-scale pipeline on a running Ray cluster, data on object storage.
#
#   BUCKET=s3://YOUR-BUCKET/stylesync cluster/pipeline.sh STAGE [-S key=value ...]
#
# STAGE: manifest | preprocess | train-syncnet | train | personalize | evaluate | all.
# Run from the repository root on the head node (the stage drivers run here; train-syncnet and
# evaluate use this node's GPU). Extra `-S` overrides go after STAGE and win.
# Environment:
#   BUCKET               required: s3://..., gs://... or a local/shared path; every output goes there
#   RAW                  the raw datasets: $RAW/lrw/lipread_mp4/..., $RAW/voxceleb2/{dev,test}/mp4/... (default $BUCKET/raw)
#   WEIGHTS              directory with the weights you supply, same path on every node (default ~/weights)
#   MLFLOW_TRACKING_URI  an MLflow server every node reaches (default: port 5000 on this node's address)
#   PROFILE              params overlay (default params/paper.yaml)
#   HOLD_GPUS            GPUs to bring up before preprocess / personalize (defaults 8 / 16): these stages
#                        size their actor pools and task slots from the resources present when they start
set -euo pipefail

stage=${1:?usage: cluster/pipeline.sh STAGE [-S key=value ...]}
shift
: "${BUCKET:?set BUCKET, e.g. BUCKET=s3://YOUR-BUCKET/stylesync}"
RAW=${RAW:-$BUCKET/raw}
WEIGHTS=${WEIGHTS:-$HOME/weights}
PROFILE=${PROFILE:-params/paper.yaml}
MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://$(hostname -I | awk '{print $1}'):5000}
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba-cache}

params=$(mktemp --suffix=.yaml)
held=0
trap 'rm -f "$params"; if [ "$held" -gt 0 ]; then hold 0; fi' EXIT
stylesync params --profile "$PROFILE" > "$params"

S=(
  -S ray.address=auto
  -S "paths.raw=$RAW"
  -S "paths.manifest=$BUCKET/manifest.parquet"
  -S "paths.shards=$BUCKET/shards"
  -S "paths.models=$BUCKET/models"
  -S "paths.runs=$BUCKET/runs"
  -S "manifest.sources=[{dataset: lrw, root: '$RAW/lrw', fraction: 1.0},
                        {dataset: voxceleb2, root: '$RAW/voxceleb2', fraction: 0.2}]"
  -S "paths.vgg19_weights=$WEIGHTS/vgg19-dcbb9e9d.pth"
  -S "paths.discriminator_init=$WEIGHTS/stylegan2-ffhq-256.pt"
  -S "paths.syncnet_official_weights=$WEIGHTS/syncnet_v2.model"
  -S "paths.arcface_onnx=$WEIGHTS/arcface.onnx"
  -S "preprocess.gpen.weights=$WEIGHTS/GPEN-BFR-512.pth"
  -S "preprocess.landmarks.weights_dir=$WEIGHTS/torch_home"
  -S preprocess.landmarks.actors=24
  -S train.cpus_per_worker=20
  -S "tracking.tracking_uri=$MLFLOW_TRACKING_URI"
)

hold() {  # ask the autoscaler for N GPUs (whole GPU nodes) and wait until they have joined; 0 releases
  python - "$1" <<'EOF'
import sys, time
import ray
from ray.autoscaler.sdk import request_resources
gpus = int(sys.argv[1])
ray.init(address="auto", logging_level="WARNING", log_to_driver=False)
request_resources(num_cpus=0, bundles=[{"GPU": 1}] * gpus)
deadline = time.time() + 1800
while ray.cluster_resources().get("GPU", 0) < gpus:
    if time.time() > deadline:
        sys.exit(f"the cluster did not reach {gpus} GPUs in 30 minutes: {ray.cluster_resources()}")
    time.sleep(15)
EOF
}

run() {
  local gpus=0
  case $1 in
    preprocess) gpus=${HOLD_GPUS:-8} ;;
    personalize) gpus=${HOLD_GPUS:-16} ;;
  esac
  if [ "$gpus" -gt 0 ]; then hold "$gpus"; held=$gpus; fi
  stylesync "$1" --params "$params" "${S[@]}" "${@:2}"
  if [ "$held" -gt 0 ]; then hold 0; held=0; fi
}

if [ "$stage" = all ]; then
  for s in manifest preprocess train-syncnet train personalize evaluate; do run "$s" "$@"; done
else
  run "$stage" "$@"
fi
