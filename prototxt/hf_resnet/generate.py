"""Generate HF-ResNet (Section 4) with caffe.NetSpec: train_val.prototxt and deploy.prototxt beside
this script. The generated files are committed; tests/test_nets_resnet.py fails if they drift.

    python prototxt/hf_resnet/generate.py            # rewrite the two files
    python prototxt/hf_resnet/generate.py --check    # exit 1 if the committed files differ

ResNet-101 (He et al., MSRA layer names, so an ImageNet caffemodel loads by name) with BatchNorm +
Scale; conv1 7x7/2, pool1 3x3/2, bottleneck stages res2 (3), res3 (4), res4 (23), res5 (3), the
stride on branch2a of each stage's first block. Hierarchical fusion of Section 4: res2c -> 3x3/2
conv -> 1x1 conv to res3b3's 512 channels -> element-wise add with res3b3 (fuse3); the same from
fuse3 to res4b22 (1024, fuse4) and from fuse4 to res5c (2048, fuse5); the trunk itself is unchanged.
Global average pooling of fuse5 gives the 2048-d feature shared by the five task heads (fc 512 +
ReLU + output, as HyperFace). No dropout. Input is the 227x227 crop of the other nets (spatial
sizes 114 -> 57 (res2) -> 29 (res3) -> 15 (res4) -> 8 (res5)).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import caffe  # noqa: E402
from caffe import layers as L, params as P  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from core.config import load_config  # noqa: E402
from core.labels import IGNORE_LABEL, SEGMENTS, SLICE_POINTS  # noqa: E402
from core import net_io  # noqa: E402

STAGES = (("2", 3, 64, 256, 1), ("3", 4, 128, 512, 2), ("4", 23, 256, 1024, 2), ("5", 3, 512, 2048, 2))
TASKS = (  # task, hidden fc, output layer, dim, train_val top, deploy top
    ("detection", "fc_detection", "detection_score", 2, "detection_score", "detection_score"),
    ("landmarks", "fc_landmarks", "landmarks", 42, "landmarks_pred", net_io.LANDMARKS),
    ("visibility", "fc_visibility", "visibility", 21, "visibility_pred", net_io.VISIBILITY),
    ("pose", "fc_pose", "pose", 3, "pose_pred", net_io.POSE),
    ("gender", "fc_gender", "gender_score", 2, "gender_score", "gender_score"),
)
LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
FROZEN_BN = [dict(lr_mult=0, decay_mult=0)] * 3


def block_names(stage: str, count: int) -> list[str]:
    """MSRA ResNet-101 block suffixes: a, b, c for 3 blocks; a, b1, b2, ... otherwise."""
    if count == 3:
        return ["a", "b", "c"]
    return ["a"] + [f"b{i}" for i in range(1, count)]


class Builder:
    def __init__(self, deploy: bool):
        self.n = caffe.NetSpec()
        self.deploy = deploy

    def conv_bn(self, name, bn_suffix, bottom, num_output, kernel, stride=1, pad=0, relu=True):
        n = self.n
        kwargs = dict(num_output=num_output, kernel_size=kernel, stride=stride, pad=pad, bias_term=False)
        if not self.deploy:
            kwargs.update(weight_filler=dict(type="msra"), param=[dict(lr_mult=1, decay_mult=1)])
        n[name] = L.Convolution(bottom, **kwargs)
        bn = dict(use_global_stats=True) if self.deploy else {}
        n["bn" + bn_suffix] = L.BatchNorm(n[name], in_place=True,
                                          **({"batch_norm_param": bn} if bn else {"param": FROZEN_BN}))
        n["scale" + bn_suffix] = L.Scale(n[name], in_place=True, scale_param=dict(bias_term=True))
        if relu:
            n[name + "_relu"] = L.ReLU(n[name], in_place=True)
        return n[name]

    def conv(self, name, bottom, num_output, kernel, stride=1, pad=0):
        kwargs = dict(num_output=num_output, kernel_size=kernel, stride=stride, pad=pad)
        if not self.deploy:
            kwargs.update(weight_filler=dict(type="msra"), bias_filler=dict(type="constant", value=0), param=LEARN)
        self.n[name] = L.Convolution(bottom, **kwargs)
        return self.n[name]

    def fc(self, name, bottom, num_output, std=0.01):
        kwargs = dict(num_output=num_output)
        if not self.deploy:
            kwargs.update(weight_filler=dict(type="gaussian", std=std), bias_filler=dict(type="constant", value=0),
                          param=LEARN)
        self.n[name] = L.InnerProduct(bottom, **kwargs)
        return self.n[name]

    def trunk(self, data):
        n = self.n
        x = self.conv_bn("conv1", "_conv1", data, 64, 7, stride=2, pad=3)
        n.pool1 = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=3, stride=2)
        x = n.pool1
        outputs = {}
        for stage, count, mid, out, first_stride in STAGES:
            for i, blk in enumerate(block_names(stage, count)):
                name = f"res{stage}{blk}"
                stride = first_stride if i == 0 else 1
                if i == 0:
                    shortcut = self.conv_bn(f"{name}_branch1", f"{stage}{blk}_branch1", x, out, 1, stride=stride, relu=False)
                else:
                    shortcut = x
                y = self.conv_bn(f"{name}_branch2a", f"{stage}{blk}_branch2a", x, mid, 1, stride=stride)
                y = self.conv_bn(f"{name}_branch2b", f"{stage}{blk}_branch2b", y, mid, 3, pad=1)
                y = self.conv_bn(f"{name}_branch2c", f"{stage}{blk}_branch2c", y, out, 1, relu=False)
                n[name] = L.Eltwise(shortcut, y)
                n[name + "_relu"] = L.ReLU(n[name], in_place=True)
                x = n[name]
                outputs[name] = x
        return outputs

    def fusion(self, outputs):
        n = self.n
        x = outputs["res2c"]
        src_channels = 256
        for src, dst, channels in (("res2c", "res3b3", 512), ("fuse3", "res4b22", 1024), ("fuse4", "res5c", 2048)):
            down = self.conv(f"{src}_down", x, src_channels, 3, stride=2, pad=1)
            n[f"{src}_down_relu"] = L.ReLU(down, in_place=True)
            proj = self.conv(f"{src}_proj", down, channels, 1)
            fused = "fuse" + dst[3]
            n[fused] = L.Eltwise(outputs[dst], proj)
            x = n[fused]
            src_channels = channels
        n.pool_fused = L.Pooling(x, pool=P.Pooling.AVE, global_pooling=True)
        return n.pool_fused

    def heads(self, feature):
        n = self.n
        for task, hidden, out, dim, top_tv, top_dep in TASKS:
            h = self.fc(hidden, feature, 512)
            n["relu_" + hidden[3:]] = L.ReLU(h, in_place=True)
            self.fc(top_dep if self.deploy else top_tv, h, dim)
        if self.deploy:
            n[net_io.DETECTION_PROB] = L.Softmax(n.detection_score)
            n[net_io.GENDER_PROB] = L.Softmax(n.gender_score)

    def losses(self, weights):
        n = self.n
        n.loss_detection = L.SoftmaxWithLoss(n.detection_score, n.detection, loss_weight=weights.detection,
                                             loss_param=dict(ignore_label=IGNORE_LABEL))
        for task in ("landmarks", "visibility", "pose"):
            n[f"{task}_masked"] = L.Eltwise(n[f"{task}_pred"], n[f"{task}_mask"], operation=P.Eltwise.PROD)
            n[f"{task}_target_masked"] = L.Eltwise(n[task], n[f"{task}_mask"], operation=P.Eltwise.PROD)
            n[f"loss_{task}"] = L.EuclideanLoss(n[f"{task}_masked"], n[f"{task}_target_masked"],
                                                loss_weight=getattr(weights, task))
        n.loss_gender = L.SoftmaxWithLoss(n.gender_score, n.gender, loss_weight=weights.gender,
                                          loss_param=dict(ignore_label=IGNORE_LABEL))
        unused = [n[name] for name in ("bbox_targets", "bbox_mask", "landmarks68", "landmarks68_mask")]
        n.silence_unused_labels = L.Silence(*unused, ntop=0)


def _header(kind: str) -> str:
    return (f"# HF-ResNet (Section 4), {kind}. GENERATED by prototxt/hf_resnet/generate.py from core/config.py;\n"
            "# do not edit by hand: edit the script and rerun it (a test compares the two).\n")


def build_deploy(cfg) -> str:
    b = Builder(deploy=True)
    size = cfg.input.size
    b.n.data = L.Input(input_param=dict(shape=dict(dim=[1, 3, size, size])))
    b.heads(b.fusion(b.trunk(b.n.data)))
    net = b.n.to_proto()
    net.name = "hf_resnet"
    return _header("deploy: input `data` (N,3,227,227), outputs as core/net_io.py") + text_format.MessageToString(net)


def build_train_val(cfg) -> str:
    b = Builder(deploy=False)
    n = b.n
    transform = dict(mean_value=list(cfg.input.mean_bgr))
    n.data = L.Data(source="lmdb/train_images", batch_size=32, backend=P.Data.LMDB,
                    transform_param=transform, include=dict(phase=caffe.TRAIN))
    n.label = L.Data(source="lmdb/train_labels", batch_size=32, backend=P.Data.LMDB, include=dict(phase=caffe.TRAIN))
    n.label_flat = L.Flatten(n.label)
    tops = L.Slice(n.label_flat, ntop=len(SEGMENTS), slice_param=dict(axis=1, slice_point=SLICE_POINTS))
    for name, top in zip(SEGMENTS, tops):
        n[name] = top
    b.heads(b.fusion(b.trunk(n.data)))
    b.losses(cfg.loss_weights)
    net = n.to_proto()
    net.name = "hf_resnet"
    # The slice layer is named after its first top by NetSpec; output layers keep their deploy
    # names (weights copy by layer name) while their train_val tops avoid the label blob names.
    renames = {"detection": "slice_label", **{top_tv: out for _, _, out, _, top_tv, _ in TASKS}}
    for layer in net.layer:
        layer.name = renames.get(layer.name, layer.name)
    # TEST-phase copies of the two data layers, reading the val LMDBs.
    for index, split in ((1, "images"), (2, "labels")):
        test_layer = net.layer.add()
        test_layer.CopyFrom(net.layer[index - 1])
        test_layer.include[0].phase = caffe.TEST
        test_layer.data_param.source = f"lmdb/val_{split}"
    layers = list(net.layer)
    reordered = layers[:2] + layers[-2:] + layers[2:-2]
    del net.layer[:]
    net.layer.extend(reordered)
    return _header("train_val") + text_format.MessageToString(net)


def generate(cfg=None) -> dict[str, str]:
    """{file name: text} of the generated prototxts for config `cfg` (default: load_config())."""
    cfg = cfg or load_config()
    return {"train_val.prototxt": build_train_val(cfg), "deploy.prototxt": build_deploy(cfg)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate prototxt/hf_resnet/{train_val,deploy}.prototxt")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    parser.add_argument("--config", default=None, help="config YAML (default config/hyperface.yaml)")
    args = parser.parse_args(argv)
    texts = generate(load_config(args.config))
    stale = [name for name, text in texts.items()
             if not (HERE / name).is_file() or (HERE / name).read_text() != text]
    if args.check:
        if stale:
            print(f"stale: {', '.join(str(HERE / s) for s in stale)}; rerun prototxt/hf_resnet/generate.py")
            return 1
        print("hf_resnet prototxts up to date")
        return 0
    for name, text in texts.items():
        (HERE / name).write_text(text)
    print(f"wrote {', '.join(str(HERE / n) for n in texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
