"""A PyTorch mirror of a Caffe deploy prototxt, for training on a GPU (training/accelerated.py).

The net is built layer by layer from the prototxt itself (nets are data: prototxt/hyperface/
deploy.prototxt stays the one description of HyperFace), with Caffe's semantics: ceil-mode pooling,
cross-channel LRN with alpha divided by the window (as Caffe and torch both define it), grouped
convolutions, InnerProduct over the C*H*W flattening of its input. `batchnorm=True` puts a
BatchNorm after every Convolution for training from scratch; `deploy_weights` folds them into the
convolutions, so the exported weights are those of the plain deploy net (the shipped graph stays the
paper's AlexNet). The losses mirror prototxt/hyperface/train_val.prototxt: SoftmaxWithLoss with
ignore_label -1 (normalised by the valid count, Caffe's default), masked EuclideanLoss
(sum of squares / 2N) with the loss weights of core.config.LossWeights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.labels import IGNORE_LABEL, OFFSETS
from core.net_shapes import read_prototxt

SUPPORTED = {"Input", "Convolution", "ReLU", "LRN", "Pooling", "Concat", "InnerProduct", "Softmax", "Dropout"}
BN_EPS = 1e-5


def _pair(values, default):
    values = list(values)
    return default if not values else int(values[0])


def layer_specs(prototxt: str | Path) -> list[dict]:
    """The layers of a deploy prototxt as plain dicts (what CaffeNet is built from), so a machine
    without Caffe's protobuf module can build the net from their JSON."""
    net = read_prototxt(prototxt)
    specs = []
    for layer in net.layer:
        if layer.type not in SUPPORTED:
            raise ValueError(f"{prototxt}: layer {layer.name!r} of type {layer.type} has no torch mirror")
        spec = {"name": layer.name, "type": layer.type, "bottom": list(layer.bottom), "top": list(layer.top)}
        if layer.type == "Input":
            spec["shape"] = [int(d) for d in layer.input_param.shape[0].dim]
        elif layer.type == "Convolution":
            p = layer.convolution_param
            spec.update(num_output=p.num_output, kernel=_pair(p.kernel_size, 1), stride=_pair(p.stride, 1),
                        pad=_pair(p.pad, 0), group=p.group or 1)
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if p.pool != p.MAX:
                raise ValueError(f"{prototxt}: layer {layer.name!r}: only MAX pooling has a torch mirror")
            spec.update(kernel=p.kernel_size, stride=p.stride or 1, pad=p.pad)
        elif layer.type == "LRN":
            p = layer.lrn_param
            spec.update(local_size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k or 1.0)
        elif layer.type == "Concat":
            spec["axis"] = layer.concat_param.axis if layer.concat_param.HasField("axis") else 1
        elif layer.type == "InnerProduct":
            spec["num_output"] = layer.inner_product_param.num_output
        elif layer.type == "Dropout":
            spec["ratio"] = layer.dropout_param.dropout_ratio
        specs.append(spec)
    return specs


class CaffeNet(nn.Module):
    """The deploy net of `layers` (layer_specs) as a torch module; forward returns {blob: tensor}."""

    def __init__(self, layers: list[dict], batchnorm: bool = False):
        super().__init__()
        self.specs = [dict(s) for s in layers]
        self.batchnorm = batchnorm
        self.convs = nn.ModuleDict()
        self.fcs = nn.ModuleDict()
        self.bns = nn.ModuleDict()
        channels: dict[str, int] = {}
        spatial: dict[str, tuple[int, int]] = {}
        for s in self.specs:
            kind, bottoms, tops = s["type"], s["bottom"], s["top"]
            if kind == "Input":
                channels[tops[0]], spatial[tops[0]] = s["shape"][1], (s["shape"][2], s["shape"][3])
            elif kind == "Convolution":
                k, st, pad = s["kernel"], s["stride"], s["pad"]
                self.convs[s["name"]] = nn.Conv2d(channels[bottoms[0]], s["num_output"], k, stride=st, padding=pad,
                                                  groups=s["group"])
                if batchnorm:
                    self.bns[s["name"]] = nn.BatchNorm2d(s["num_output"], eps=BN_EPS)
                h, w = spatial[bottoms[0]]
                channels[tops[0]] = s["num_output"]
                spatial[tops[0]] = ((h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1)
            elif kind == "Pooling":
                k, st, pad = s["kernel"], s["stride"], s["pad"]
                out = lambda n: int(np.ceil((n + 2 * pad - k) / st)) + 1  # noqa: E731  (Caffe rounds up)
                h, w = spatial[bottoms[0]]
                channels[tops[0]], spatial[tops[0]] = channels[bottoms[0]], (out(h), out(w))
            elif kind == "Concat":
                channels[tops[0]] = sum(channels[b] for b in bottoms)
                spatial[tops[0]] = spatial[bottoms[0]]
            elif kind == "InnerProduct":
                cin = channels[bottoms[0]] * int(np.prod(spatial[bottoms[0]]))
                self.fcs[s["name"]] = nn.Linear(cin, s["num_output"])
                channels[tops[0]], spatial[tops[0]] = s["num_output"], (1, 1)
            else:  # ReLU, LRN, Softmax, Dropout keep the shape
                channels[tops[0]], spatial[tops[0]] = channels[bottoms[0]], spatial[bottoms[0]]
        self.init_weights()

    def init_weights(self, seed: int = 0) -> None:
        """He-normal weights (ReLU follows them) and Gaussian(0.01) for the small output layers, zero
        biases: a deterministic function of `seed`. (Caffe's fixed Gaussian fillers of train_val
        stall a from-scratch run without ImageNet weights.)"""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name in sorted(self.convs):
                conv = self.convs[name]
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * np.sqrt(2.0 / fan_in))
                conv.bias.zero_()
            for name in sorted(self.fcs):
                fc = self.fcs[name]
                std = np.sqrt(2.0 / fc.in_features) if fc.out_features > 64 else 0.01
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * std)
                fc.bias.zero_()

    def forward(self, data: torch.Tensor) -> dict[str, torch.Tensor]:
        blobs: dict[str, torch.Tensor] = {}
        for s in self.specs:
            kind, bottoms, tops = s["type"], s["bottom"], s["top"]
            if kind == "Input":
                blobs[tops[0]] = data
                continue
            x = blobs[bottoms[0]]
            if kind == "Convolution":
                y = self.convs[s["name"]](x)
                if self.batchnorm:
                    y = self.bns[s["name"]](y)
            elif kind == "ReLU":
                y = F.relu(x)
            elif kind == "LRN":  # in float32: the squared sums overflow bf16's precision
                y = F.local_response_norm(x.float(), s["local_size"], alpha=s["alpha"], beta=s["beta"],
                                          k=s["k"]).to(x.dtype)
            elif kind == "Pooling":
                y = F.max_pool2d(x, s["kernel"], s["stride"], s["pad"], ceil_mode=True)
            elif kind == "Concat":
                y = torch.cat([blobs[b] for b in bottoms], dim=s["axis"])
            elif kind == "InnerProduct":
                y = self.fcs[s["name"]](x.flatten(1))
            elif kind == "Softmax":
                y = F.softmax(x.float(), dim=1)
            else:  # Dropout: identity at test, as in the deploy net
                y = F.dropout(x, s["ratio"], self.training)
            blobs[tops[0]] = y
        return blobs

    # -- weights in the deploy net's terms
    def deploy_weights(self) -> dict[str, list[np.ndarray]]:
        """{layer: [weight, bias]} float32 of the deploy net, BatchNorm folded into its convolution."""
        out = {}
        with torch.no_grad():
            for name, conv in self.convs.items():
                w, b = conv.weight.detach().double().cpu(), conv.bias.detach().double().cpu()
                if self.batchnorm:
                    bn = self.bns[name]
                    scale = bn.weight.double().cpu() / torch.sqrt(bn.running_var.double().cpu() + bn.eps)
                    w = w * scale[:, None, None, None]
                    b = (b - bn.running_mean.double().cpu()) * scale + bn.bias.double().cpu()
                out[name] = [w.float().numpy(), b.float().numpy()]
            for name, fc in self.fcs.items():
                out[name] = [fc.weight.detach().float().cpu().numpy(), fc.bias.detach().float().cpu().numpy()]
        return out

    def load_deploy_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        """Set convolutions and fc layers from deploy weights (BatchNorm, if any, reset to identity)."""
        missing = (set(self.convs) | set(self.fcs)) - set(weights)
        if missing:
            raise ValueError(f"no weights for layer(s) {sorted(missing)}")
        with torch.no_grad():
            for name, module in list(self.convs.items()) + list(self.fcs.items()):
                w, b = weights[name][0], weights[name][1]
                module.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)).reshape(module.weight.shape))
                module.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)).reshape(module.bias.shape))
            for bn in self.bns.values():
                bn.reset_parameters()
                bn.reset_running_stats()


def parameter_groups(net: CaffeNet, weight_decay: float) -> list[dict]:
    """Caffe's `param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }` for weights and
    biases; BatchNorm scale/shift like biases."""
    weights, biases = [], []
    for name, p in net.named_parameters():
        (weights if name.endswith(".weight") and not name.startswith("bns.") else biases).append(p)
    return [{"params": weights, "lr_mult": 1.0, "weight_decay": weight_decay},
            {"params": biases, "lr_mult": 2.0, "weight_decay": 0.0}]


def _softmax_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    target = labels.round().long()
    valid = target != IGNORE_LABEL
    if not bool(valid.any()):
        return scores.sum() * 0.0
    return F.cross_entropy(scores.float(), target.clamp(min=0), reduction="none")[valid].sum() / valid.sum()


def _masked_euclidean(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    diff = pred.float() * mask - target * mask
    return (diff * diff).sum() / (2.0 * pred.shape[0])


def hyperface_losses(blobs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The unweighted task losses of prototxt/hyperface/train_val.prototxt for label vectors (N, 414)."""
    seg = lambda name: labels[:, OFFSETS[name]]  # noqa: E731
    return {
        "detection": _softmax_loss(blobs["detection_score"], seg("detection")[:, 0]),
        "landmarks": _masked_euclidean(blobs["landmarks"], seg("landmarks"), seg("landmarks_mask")),
        "visibility": _masked_euclidean(blobs["visibility"], seg("visibility"), seg("visibility_mask")),
        "pose": _masked_euclidean(blobs["pose"], seg("pose"), seg("pose_mask")),
        "gender": _softmax_loss(blobs["gender_score"], seg("gender")[:, 0]),
    }


def weighted_total(losses: dict[str, torch.Tensor], loss_weights) -> torch.Tensor:
    """Equation 6: sum of lambda_t * loss_t with core.config.LossWeights."""
    return sum(float(getattr(loss_weights, name)) * value for name, value in losses.items())
