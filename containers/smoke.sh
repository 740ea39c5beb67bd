#!/usr/bin/env bash
# `make container-smoke`: build the CPU image on this machine and run one real
# component in it, the way Kubeflow Pipelines would.
#
#   1. a Debian bookworm root file system from debootstrap (python3, python3-venv,
#      ca-certificates), cached as .tools/container-base/bookworm.tar;
#   2. `podman import` of it as localhost/qatflow-base:bookworm (skipped if present);
#   3. the CPU image from containers/Containerfile on that base, with the host's CA
#      bundle as the build secret "cacert" (pip and uv in the RUN step need it here);
#   4. synthetic demo data and `qatflow compile` on the host (paths as the container
#      sees them), then the compiled DetectionExampleGen task's own command and args,
#      with KFP's {{$}} placeholder replaced by an ExecutorInput, run with
#      `buildah run --isolation chroot` in a working container of the image (podman
#      run does not work on this machine, buildah's chroot isolation does);
#   5. checks of the Examples artifact and the executor output on the host.
#
# Needs root, podman, buildah, debootstrap (the Makefile installs them) and the
# project's .venv (PY). Work files go to runs/container-smoke/ (gitignored).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QATFLOW=$(dirname "$PY")/qatflow
IMAGE_TAG=${IMAGE_TAG:-0.1.0}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_DIR=.tools/container-base
BASE_TAR=$BASE_DIR/bookworm.tar
BASE_IMAGE=localhost/qatflow-base:bookworm
IMAGE=localhost/qatflow-cpu:$IMAGE_TAG
WORK=$PWD/runs/container-smoke
SMOKE_IMAGES=${SMOKE_IMAGES:-24}
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2

log() { printf '\n== %s [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }

# 1. Debian base root file system (cached).
if [ ! -f "$BASE_TAR" ]; then
  log "debootstrap bookworm -> $BASE_TAR"
  t0=$(date +%s)
  mkdir -p "$BASE_DIR"
  rootfs=$(mktemp -d "$BASE_DIR/rootfs.XXXXXX")
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$rootfs"
  echo "debootstrap: $(elapsed "$t0"), $(du -h "$BASE_TAR" | cut -f1)"
fi

# 2. The base image (an imported file system has no config: give it PATH and LANG).
if ! podman image exists "$BASE_IMAGE"; then
  log "podman import $BASE_TAR -> $BASE_IMAGE"
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    "$BASE_TAR" "$BASE_IMAGE"
fi

# 3. The CPU image (podman's layer cache makes a rebuild without changes quick).
log "podman build $IMAGE"
t0=$(date +%s)
podman build --isolation=chroot --secret "id=cacert,src=$CA_BUNDLE" \
  -f containers/Containerfile --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" .
echo "image build: $(elapsed "$t0"), $(podman image inspect "$IMAGE" --format '{{.Size}}' |
  awk '{printf "%.2f GB", $1 / 1e9}')"

# 4. Demo data, compiled pipeline, the ExampleGen task inside the image.
log "demo data and compiled pipeline"
rm -rf "$WORK"
mkdir -p "$WORK/root"
"$QATFLOW" demo-data --output "$WORK/data" --images "$SMOKE_IMAGES" --seed 0
"$QATFLOW" compile --config configs/demo.yaml --output "$WORK/pipeline.json" \
  --set kubeflow.pipeline_root=/smoke/root \
  --set kubeflow.data_input=/smoke/data/images \
  --set kubeflow.data_annotations=/smoke/data/annotations.json \
  --set kubeflow.cpu_image="$IMAGE"
"$PY" containers/smoke.py command --pipeline "$WORK/pipeline.json" --task DetectionExampleGen \
  --image "$IMAGE" --artifact-root /smoke/root/smoke-run >"$WORK/command.json"
# The container runs as the image's non-root user: the output folder must be its to write.
chmod 0777 "$WORK/root"

log "buildah run: DetectionExampleGen through the Kubeflow V2 entrypoint"
ctr=$(buildah from --pull-never "$IMAGE")
trap 'buildah rm "$ctr" >/dev/null' EXIT
mapfile -d '' argv < <("$PY" -c \
  'import json,sys; sys.stdout.write("\0".join(json.load(open(sys.argv[1]))))' \
  "$WORK/command.json")
t0=$(date +%s)
buildah run --isolation chroot -v "$WORK:/smoke" "$ctr" -- id | tee "$WORK/id.txt"
# The offline ImageNet backbones are in the image, where `uri: imagenet` looks for them.
buildah run --isolation chroot "$ctr" -- python -c '
import numpy as np
from model_maker.object_detector.pretrained_cache import OFFLINE_BACKBONES, require_file, weights_file
for name in OFFLINE_BACKBONES:
    path = require_file(weights_file(name))
    print(name, path, len(np.load(path).files), "arrays")
' | tee "$WORK/pretrained.txt"
if ! buildah run --isolation chroot -v "$WORK:/smoke" "$ctr" -- "${argv[@]}" \
  >"$WORK/component.log" 2>&1; then
  tail -40 "$WORK/component.log"
  echo "the component failed in the container (full log: $WORK/component.log)" >&2
  exit 1
fi
grep -E 'Executor .* do:|Starting executor' "$WORK/component.log" | cut -c1-300
echo "component run: $(elapsed "$t0")"

# 5. The artifact, read on the host.
log "check the Examples artifact"
"$PY" containers/smoke.py check --work "$WORK" --artifact-root "$WORK/root/smoke-run" \
  --images "$SMOKE_IMAGES"
