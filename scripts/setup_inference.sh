#!/usr/bin/env bash
# HyperFace inference-only setup (run by `make setup-inference`, which `make demo` depends on):
#   1. Debian package protobuf-compiler (skipped when installed)
#   2. .venv in the repo root from requirements.txt (skipped when unchanged)
#   3. brocolli-caffe sdist fetched with pip into the cache (sha256 checked; shared with `make setup`)
#   4. src/caffe/proto/caffe.proto extracted from it and compiled with protoc into
#      $HYPERFACE_MODEL_CACHE/caffe_pb2/caffe_pb2.py (default ~/.cache/hyperface/...), where
#      core/caffe_proto.py finds it when pycaffe is not built
#   5. check: the venv's protobuf loads the generated module
# No Caffe build: the OpenCV DNN backend runs the nets. Idempotent; a second run takes ~1 s.
# Logs: $HYPERFACE_CACHE/logs/ (default ~/.cache/hyperface/logs/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SETUP_TAG=setup-inference
# shellcheck source=scripts/setup_lib.sh
source "$ROOT/scripts/setup_lib.sh"   # SDIST_*, CACHE, VENV, LOGS, step, apt_ensure, venv_ensure, sdist_fetch
# same folder as core.caffe_proto.cache_dir() / "caffe_pb2"
PB2_DIR="${HYPERFACE_MODEL_CACHE:-$HOME/.cache/hyperface}/caffe_pb2"
PB2="$PB2_DIR/caffe_pb2.py"
STAMP="$PB2_DIR/.stamp"
PROTO_IN_SDIST="$SDIST_NAME-$SDIST_VERSION/src/caffe/proto/caffe.proto"

# ---------------------------------------------------------------- 1. apt
step "apt packages (protobuf-compiler)" "$LOGS/inference-apt.log"
apt_ensure protobuf-compiler

# ---------------------------------------------------------------- 2. venv
step "python venv (.venv from requirements.txt)" "$LOGS/venv.log"
venv_ensure

# ---------------------------------------------------------------- 3-4. caffe_pb2
# The stamp names what the generated file depends on: the sdist, protoc, the venv's protobuf pin.
want="$SDIST_SHA256 $(protoc --version) $(grep -iE '^protobuf[=<>~ ]' "$ROOT/requirements.txt" || true)"
if [ -f "$PB2" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$want" ]; then
  step "caffe_pb2 (cached at $PB2)"
else
  step "fetch sdist $SDIST_NAME==$SDIST_VERSION" "$LOGS/sdist-fetch.log"
  sdist_fetch

  step "protoc caffe.proto -> $PB2" "$LOGS/inference-protoc.log"
  mkdir -p "$PB2_DIR"
  work="$(mktemp -d "$PB2_DIR/.gen.XXXXXX")"
  {
    tar -xzf "$SDIST" -C "$work" "$PROTO_IN_SDIST"
    protoc --proto_path="$work/$(dirname "$PROTO_IN_SDIST")" --python_out="$work" \
      "$work/$PROTO_IN_SDIST"
  } > "$LOG" 2>&1
  mv -f "$work/caffe_pb2.py" "$PB2"   # atomic rename within the folder
  rm -rf "$work"
  echo "$want" > "$STAMP"
fi

# ---------------------------------------------------------------- 5. check
step "check (venv protobuf loads caffe_pb2)" "$LOGS/inference-check.log"
env -u PYTHONPATH "$VENV/bin/python" - "$PB2" > "$LOG" 2>&1 <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("caffe_pb2", sys.argv[1])
pb2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb2)
net = pb2.NetParameter(name="check")
net.layer.add(name="p", type="PriorBox").prior_box_param.min_size.append(30.0)  # SSD fields present
assert pb2.NetParameter.FromString(net.SerializeToString()).layer[0].prior_box_param.min_size[0] == 30.0
print("caffe_pb2 OK", sys.argv[1])
EOF
sed 's/^/    /' "$LOG"
echo "==> [$SETUP_TAG] done. caffe_pb2 at $PB2"
