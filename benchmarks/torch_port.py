"""torchvision's MobileNetV2 module shape carrying the shared Keras MobileNetV2's ImageNet weights, ported tensor
by tensor, and its .onnx export: the PyTorch model that torch_mobilenet.py and int8_agreement.py measure.

The port: Keras pads stride-2 convolutions bottom/right by one ("same" on an even size), so the torch module
pads (0, 1, 0, 1) before them; BatchNorm eps 1e-3; the Keras model takes [-1, 1], so a fixed per-channel affine
in front maps torchvision's normalisation ((x/255 - mean) / std) to it; the head gives logits (Keras: softmax),
the same top-1."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelite.preprocess import PRESETS

from .shared_data import SHARED

KERAS_MODEL = SHARED / "data/models/mobilenet_v2_1.0_224_imagenet.keras"
# torchvision's normalisation, in 0-1 units: the runtime's "torch" preset (pixel units) is the one definition
MEAN, STD = (np.array(v) / 255 for v in PRESETS["torch"][1:])
# torchvision's inverted residual settings: expansion t, channels c, repeats n, first stride s
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def build_torch():
    """torchvision's MobileNetV2 layout (features: ConvBNReLU, InvertedResidual x17, ConvBNReLU; classifier:
    Dropout, Linear), with Keras' padding and BN epsilon, and the [-1, 1] affine in front."""
    import torch
    from torch import nn

    def conv_bn(cin, cout, k, stride, groups=1, relu=True):
        pad = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
        layers = pad + [nn.Conv2d(cin, cout, k, stride, 0 if stride == 2 else k // 2, groups=groups, bias=False),
                        nn.BatchNorm2d(cout, eps=1e-3)]
        return nn.Sequential(*layers, *([nn.ReLU6()] if relu else []))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [conv_bn(cin, hidden, 1, 1)] if t != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, relu=False)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            features, cin = [conv_bn(3, 32, 3, 2)], 32
            for t, c, n, s in SETTINGS:
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn(cin, 1280, 1, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
            # torchvision's input x_t = (p/255 - mean)/std; Keras' x_k = p/127.5 - 1 = 2 std x_t + 2 mean - 1
            self.register_buffer("scale", torch.tensor(2 * STD, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("shift", torch.tensor(2 * MEAN - 1, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x):
            x = self.features(x * self.scale + self.shift)
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return MobileNetV2().eval()


def port(module, keras_model) -> None:
    """Keras weights into the torch module, in order: every Conv2D/DepthwiseConv2D/BatchNormalization/Dense."""
    import torch
    from torch import nn

    keras_layers = [layer for layer in keras_model.layers if layer.weights]
    torch_layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    assert len(keras_layers) == len(torch_layers), (len(keras_layers), len(torch_layers))
    with torch.no_grad():
        for k, t in zip(keras_layers, torch_layers):
            w = [np.asarray(v) for v in k.get_weights()]
            kind = type(k).__name__
            if kind == "DepthwiseConv2D":
                t.weight.copy_(torch.from_numpy(w[0].transpose(2, 3, 0, 1).reshape(t.weight.shape).copy()))
            elif kind == "Conv2D":
                t.weight.copy_(torch.from_numpy(w[0].transpose(3, 2, 0, 1).copy()))
            elif kind == "BatchNormalization":
                assert abs(k.epsilon - t.eps) < 1e-9
                for target, value in zip((t.weight, t.bias, t.running_mean, t.running_var), w):
                    target.copy_(torch.from_numpy(value))
            elif kind == "Dense":
                t.weight.copy_(torch.from_numpy(w[0].T.copy()))
                t.bias.copy_(torch.from_numpy(w[1]))
            else:
                raise AssertionError(kind)


def export_onnx(module, path: Path) -> Path:
    """The module as torch.onnx's TorchScript exporter writes it (opset 17, NCHW input, dynamic batch)."""
    import torch

    torch.onnx.export(module, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path
