#!/usr/bin/env python3
"""PyTorch peer of `advface-bench student` (issue 4): the same student network, timed the
same way, so that burn flex can be compared with PyTorch on the same CPU in the same run.

Install (CPU wheels are enough; only PyPI is needed):
  python3 -m venv venv-torch && venv-torch/bin/pip install torch numpy
then `advface-bench student --python venv-torch/bin/python` runs this script itself.

The network is advface-models' `Student` (crates/advface-models/src/student.rs) written in
PyTorch: ImageNet normalisation inside the model, optional average-pool of the input by
--downsample, stem 7x7/2 conv (no bias) + BN + ReLU + 3x3/2 max pool (padding 1),
ResNet-18 BasicBlocks [2, 2, 2] (layer1..layer3; 1x1 conv + BN projection where the stride
or the channels change), global average pool, linear to 128 (with bias). He-normal
fan-out convolutions as torchvision does.

Timed, as on the Rust side:
  train: one Adam step (lr 1e-3, betas 0.9/0.999, eps 1e-8) on the MSE to random targets,
         train mode (batch statistics), batch --batch, reading the loss back (loss.item());
         median over --steps after --warmup steps.
  grad:  eval mode, batch 1: descriptor, MSE to a target, gradient w.r.t. the input pixels
         only (torch.autograd.grad(loss, pixels): no weight gradients, as burn's eval-mode
         module computes none); median over --grad-reps after --warmup.

Prints one JSON object on stdout (the last line), read by `advface-bench student`. If torch
cannot be imported it prints {"error": "torch-missing", ...} and exits with status 3.

Usage (from anywhere):
  python3 tools/torch_student_bench.py [--batch 32] [--size 112] [--width 64]
      [--downsample 1] [--steps 5] [--warmup 2] [--grad-reps 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--downsample", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--grad-reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--descriptor-len", type=int, default=128)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:  # the Rust side prints how to install it
        print(json.dumps({"error": "torch-missing", "detail": str(e)}))
        return 3

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    def conv(c_in: int, c_out: int, k: int, stride: int, pad: int) -> nn.Conv2d:
        c = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False)
        nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")
        return c

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1 = conv(c_in, c_out, 3, stride, 1)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = conv(c_out, c_out, 3, 1, 1)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(conv(c_in, c_out, 1, stride, 0), nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x if self.downsample is None else self.downsample(x)
            return F.relu(out + shortcut)

    class Student(nn.Module):
        def __init__(self, width: int, downsample: int, descriptor_len: int):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
            self.input_downsample = downsample
            self.conv1 = conv(3, width, 7, 2, 3)
            self.bn1 = nn.BatchNorm2d(width)
            blocks = []
            c_in = width
            for stage, count in enumerate([2, 2, 2]):  # ResNet-18 layer1..layer3
                c_out = width << stage
                for b in range(count):
                    stride = 2 if b == 0 and stage > 0 else 1
                    blocks.append(BasicBlock(c_in if b == 0 else c_out, c_out, stride))
                c_in = c_out
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(c_in, descriptor_len)

        def forward(self, pixels):
            x = (pixels - self.mean) / self.std
            if self.input_downsample > 1:
                f = self.input_downsample
                x = F.avg_pool2d(x, f, stride=f)
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.max_pool2d(x, 3, stride=2, padding=1)
            x = self.blocks(x)
            return self.fc(x.mean(dim=(2, 3)))

    model = Student(args.width, args.downsample, args.descriptor_len)
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    n, s, d = args.batch, args.size, args.descriptor_len
    g = torch.Generator().manual_seed(12345)
    x = torch.rand(n, 3, s, s, generator=g)
    t = (torch.rand(n, d, generator=g) - 0.5) * 0.3
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def train_step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), t)
        value = loss.item()
        loss.backward()
        opt.step()
        return value

    model.train()
    for _ in range(args.warmup):
        train_step()
    times = []
    loss = float("nan")
    for _ in range(max(1, args.steps)):
        t0 = time.perf_counter()
        loss = train_step()
        times.append(time.perf_counter() - t0)
    train_median = statistics.median(times)

    model.eval()
    x1 = x[:1].clone()
    t1 = t[:1].clone()

    def grad_step():
        # torch.autograd.grad with the pixels as the only input: like burn's eval-mode
        # module (no autodiff on the weights), no weight gradient is computed.
        xi = x1.clone().requires_grad_(True)
        out = model(xi)
        (g,) = torch.autograd.grad(F.mse_loss(out, t1), xi)
        return out.detach(), g

    for _ in range(args.warmup):
        grad_step()
    gtimes = []
    for _ in range(max(1, args.grad_reps)):
        t0 = time.perf_counter()
        grad_step()
        gtimes.append(time.perf_counter() - t0)

    print(json.dumps({
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "batch": n,
        "size": s,
        "width": args.width,
        "downsample": args.downsample,
        "params_trainable": trainable,
        "params_with_running_stats": trainable + running,
        "train_step_s": train_median,
        "train_images_per_s": n / train_median,
        "train_samples_s": times,
        "last_loss": loss,
        "grad_step_ms": statistics.median(gtimes) * 1e3,
        "grad_samples_ms": [v * 1e3 for v in gtimes],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
