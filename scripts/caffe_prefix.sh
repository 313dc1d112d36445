#!/usr/bin/env bash
# Prints the install prefix of the HyperFace Caffe build for this checkout.
# The prefix lives in a cache shared by every clone on the machine and is keyed by
# the sdist version plus sha256(third_party/caffe/*.patch in C-locale order — caffe.patch,
# then speed.patch — + the numpy pin of requirements.txt), so any change to a patch or to
# the numpy ABI gives a new build (with caffe.patch alone the key is the original one).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CAFFE_SDIST_VERSION=9.0.2
cache="${HYPERFACE_CACHE:-$HOME/.cache/hyperface}"
key="$( { cat $(LC_ALL=C ls "$root"/third_party/caffe/*.patch | LC_ALL=C sort); grep -iE '^numpy[=<>~ ]' "$root/requirements.txt" || true; } \
        | sha256sum | cut -c1-16)"
echo "$cache/caffe-$CAFFE_SDIST_VERSION-$key"
