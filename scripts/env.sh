# Source me:  source scripts/env.sh
# Sets the same environment the Makefile exports to every recipe:
#   HYPERFACE_ROOT  repository root
#   CAFFE_PREFIX    Caffe install prefix (bin/caffe, lib/libcaffe.so, python/caffe)
#   PYTHONPATH      $CAFFE_PREFIX/python:$HYPERFACE_ROOT   (replaced, not appended:
#                   never mix in another, pip-installed caffe)
#   LD_LIBRARY_PATH $CAFFE_PREFIX/lib:...
#   PATH            $CAFFE_PREFIX/bin:$HYPERFACE_ROOT/.venv/bin:...
# Then `python -c "import caffe"` and `caffe --version` work in this shell.
_hf_src="${BASH_SOURCE[0]:-$0}"
HYPERFACE_ROOT="$(cd "$(dirname "$_hf_src")/.." && pwd)"
CAFFE_PREFIX="$(bash "$HYPERFACE_ROOT/scripts/caffe_prefix.sh")"
export HYPERFACE_ROOT CAFFE_PREFIX
export PYTHONPATH="$CAFFE_PREFIX/python:$HYPERFACE_ROOT"
case ":${LD_LIBRARY_PATH:-}:" in
  *":$CAFFE_PREFIX/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$CAFFE_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
case ":$PATH:" in
  *":$CAFFE_PREFIX/bin:"*) ;;
  *) export PATH="$CAFFE_PREFIX/bin:$HYPERFACE_ROOT/.venv/bin:$PATH" ;;
esac
if [ ! -x "$CAFFE_PREFIX/bin/caffe" ]; then
  echo "scripts/env.sh: Caffe is not built yet at $CAFFE_PREFIX — run 'make setup'" >&2
fi
unset _hf_src
