"""Net surgery of Section 4: initialise a net from another's caffemodel by copying layers by name.

  R-CNN Face      <- an AlexNet caffemodel (conv1..conv5, fc6, fc7; its fc8 has no namesake)
  HyperFace       <- R-CNN Face (conv1..conv5: use --layers or TRUNK, fc6/fc7 do not exist there
                     and detection_score has another input size)
  Multitask Face  <- R-CNN Face (every common layer)

    python -m prototxt.net_surgery --src-net A.prototxt --src-weights A.caffemodel \
        --dst-net prototxt/hyperface/deploy.prototxt --out init.caffemodel --layers conv1 conv2 conv3 conv4 conv5

A copied layer must match in every blob shape; otherwise SurgeryError names the layer and both shapes.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.errors import HyperFaceError

log = logging.getLogger(__name__)

TRUNK = ("conv1", "conv2", "conv3", "conv4", "conv5")  # the AlexNet convolutions every net shares


class SurgeryError(HyperFaceError, ValueError):
    """Weights that cannot be copied; the message names the layer (and file) at fault."""


def copy_params(src_net, dst_net, layers=None) -> list[str]:
    """Copy the parameter blobs of `layers` (default: every layer name with params in both nets)
    from pycaffe net `src_net` into `dst_net`, in place. Returns the copied layer names in dst order."""
    common = [name for name in dst_net.params if name in src_net.params]
    if layers is None:
        layers = common
    missing = [name for name in layers if name not in src_net.params or name not in dst_net.params]
    if missing:
        raise SurgeryError(f"layer {missing[0]!r} has no parameters in {'source' if missing[0] not in src_net.params else 'target'} net")
    for name in layers:
        src, dst = src_net.params[name], dst_net.params[name]
        src_shapes = [tuple(b.data.shape) for b in src]
        dst_shapes = [tuple(b.data.shape) for b in dst]
        if src_shapes != dst_shapes:
            raise SurgeryError(f"layer {name!r}: source shapes {src_shapes} != target shapes {dst_shapes}")
    for name in layers:
        for src_blob, dst_blob in zip(src_net.params[name], dst_net.params[name]):
            dst_blob.data[...] = src_blob.data
    return [name for name in dst_net.params if name in set(layers)]


def transfer(src_net_path, src_weights_path, dst_net_path, out_path, layers=None) -> list[str]:
    """Load src net + weights, build the dst net (its fillers give the uncopied layers), copy
    `layers` by name, save the dst weights to `out_path`; return the copied layer names."""
    import caffe
    for path in (src_net_path, src_weights_path, dst_net_path):
        if not Path(path).is_file():
            raise SurgeryError(f"{path}: file not found")
    src = caffe.Net(str(src_net_path), str(src_weights_path), caffe.TEST)
    dst = caffe.Net(str(dst_net_path), caffe.TEST)
    try:
        copied = copy_params(src, dst, layers)
    except SurgeryError as err:
        raise SurgeryError(f"{src_weights_path} -> {dst_net_path}: {err}") from None
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    dst.save(str(out_path))
    skipped = [name for name in dst.params if name not in copied]
    log.info("copied %d layers (%s); not copied (the dst net's fillers; zeros for a deploy net): %s", len(copied), ", ".join(copied),
             ", ".join(skipped) or "none")
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src-net", required=True, help="prototxt of the source net (deploy)")
    parser.add_argument("--src-weights", required=True, help="caffemodel of the source net")
    parser.add_argument("--dst-net", required=True, help="prototxt of the target net (deploy)")
    parser.add_argument("--out", required=True, help="caffemodel to write")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--layers", nargs="+", help="layer names to copy (default: all common ones)")
    group.add_argument("--trunk", action="store_true", help="copy conv1..conv5 only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    layers = list(TRUNK) if args.trunk else args.layers
    try:
        copied = transfer(args.src_net, args.src_weights, args.dst_net, args.out, layers)
    except SurgeryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"copied {len(copied)} layers into {args.out}: {' '.join(copied)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
