"""Reference run for test/onnx-torch.test.ts (Debian's python3-torch, no onnx package needed).

argv: OUT_DIR INPUT_JSON. The input holds 8 Fashion-MNIST test images (NCHW, [0, 1]) and labels.
For a small CNN, a small ResNet (BatchNorm, residual adds, a strided 1x1 shortcut) and an MLP (GELU),
seeded random weights and eval-mode BatchNorm statistics, this writes NAME.onnx (torch.onnx.export,
opset 13, dynamic batch) and NAME.json: PyTorch's logits, the input gradient of the summed
cross-entropy (torch.autograd.grad), and the end point of 5 PGD steps (Linf eps 0.1, step 0.025 in
[0, 1] units, from the clean images, sign of the gradient, projected to the ball and the box).
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
out, inp = sys.argv[1], sys.argv[2]
data = json.load(open(inp))
x = torch.tensor(data["x"], dtype=torch.float32).reshape(-1, 1, 28, 28)
y = torch.tensor(data["y"], dtype=torch.long)


def randomize_bn(m):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, v):
        v = F.max_pool2d(F.relu(self.bn(self.c1(v))), 2)
        v = F.relu(self.c2(v))
        return self.fc(torch.flatten(v, 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bna = nn.BatchNorm2d(cout)
        self.b = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bnb = nn.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, v):
        h = F.relu(self.bna(self.a(v)))
        h = self.bnb(self.b(h))
        return F.relu(h + (v if self.short is None else self.short(v)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.b1 = Block(8, 8, 1)
        self.b2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, v):
        v = F.relu(self.bn(self.stem(v)))
        v = self.b2(self.b1(v))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(v, 1), 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(784, 64)
        self.l2 = nn.Linear(64, 10)

    def forward(self, v):
        return self.l2(F.gelu(self.l1(v.reshape(v.shape[0], -1))))


for name, net in [("cnn", CNN()), ("resnet", ResNet()), ("mlp", MLP())]:
    randomize_bn(net)
    net.eval()
    torch.onnx.export(net, x[:1], f"{out}/{name}.onnx", opset_version=13, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    xg = x.clone().requires_grad_(True)
    logits = net(xg)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
    eps, step = 0.1, 0.025
    xa = x.clone()
    for _ in range(5):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(net(xa), y, reduction="sum"), xa)
        xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    json.dump({"logits": logits.detach().flatten().tolist(), "grad": grad.flatten().tolist(), "pgd": xa.flatten().tolist(),
               "torch": torch.__version__}, open(f"{out}/{name}.json", "w"))
print("ok", torch.__version__)
