# Shared steps of the two setup scripts (source me; ROOT must be set first):
#   scripts/setup_caffe.sh      `make setup`            apt, .venv, sdist fetch, full CPU Caffe build
#   scripts/setup_inference.sh  `make setup-inference`  protoc, .venv, sdist fetch, caffe_pb2.py only
# Functions: step NAME [LOG]; apt_ensure PKG...; venv_ensure; sdist_fetch (into $SDIST, sha256 checked).
# A failure anywhere prints one line naming the step (and its log) through the EXIT trap set here.
# Environment: HYPERFACE_CACHE (sdist + logs, default ~/.cache/hyperface), HYPERFACE_PYTHON (base python).

SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE="${HYPERFACE_CACHE:-$HOME/.cache/hyperface}"
SDIST="$CACHE/sdist/$SDIST_NAME-$SDIST_VERSION.tar.gz"
VENV="$ROOT/.venv"
BASE_PYTHON="${HYPERFACE_PYTHON:-python3}"
LOGS="$CACHE/logs"
SETUP_TAG="${SETUP_TAG:-setup}"   # the word in "==> [setup] step" lines
mkdir -p "$CACHE/sdist" "$LOGS"

STEP=""
LOG=""
step() { STEP="$1"; LOG="${2:-}"; echo "==> [$SETUP_TAG] $STEP"; }
on_exit() {
  local rc=$?
  [ "$rc" -eq 0 ] && return 0
  echo "!!! [$SETUP_TAG] FAILED at step '$STEP'${LOG:+ — see log: $LOG}" >&2
  if [ -n "$LOG" ] && [ -f "$LOG" ]; then tail -n 25 "$LOG" >&2; fi
  return "$rc"
}
trap on_exit EXIT

# apt_ensure PKG... : install the Debian packages that are missing (needs the current step's $LOG).
apt_ensure() {
  local missing=() p SUDO=""
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "    all $# packages already installed"
  else
    echo "    installing: ${missing[*]}"
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    { $SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; } > "$LOG" 2>&1
  fi
}

# venv_ensure : $VENV from requirements.txt, reinstalled only when requirements.txt changed.
venv_ensure() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$BASE_PYTHON" -m venv "$VENV" > "$LOG" 2>&1
  fi
  local req_sha
  req_sha="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$req_sha" ]; then
    {
      "$VENV/bin/python" -m pip install --upgrade pip
      "$VENV/bin/python" -m pip install -r "$ROOT/requirements.txt"
    } >> "$LOG" 2>&1
    echo "$req_sha" > "$VENV/.requirements.sha256"
    echo "    installed requirements into $VENV"
  else
    echo "    requirements unchanged"
  fi
  if "$VENV/bin/python" -m pip show caffe brocolli-caffe > /dev/null 2>&1; then
    echo "    WARNING: a pip-installed caffe is in .venv; it will clash with ours ('pip uninstall' it)" >&2
  fi
}

# sdist_fetch : the brocolli-caffe sdist into $SDIST with pip (skipped when cached), sha256 checked.
sdist_fetch() {
  if [ ! -f "$SDIST" ] || [ "$(sha256sum "$SDIST" | cut -d' ' -f1)" != "$SDIST_SHA256" ]; then
    rm -f "$SDIST"
    "$VENV/bin/python" -m pip download --no-deps --no-binary :all: \
      "$SDIST_NAME==$SDIST_VERSION" -d "$CACHE/sdist" > "$LOG" 2>&1
  fi
  echo "$SDIST_SHA256  $SDIST" | sha256sum -c --quiet - >> "$LOG" 2>&1
}
