"""The authors' image networks, rewritten from their sources (no ``notpipe`` import).

Sources: ``src/unet.py`` and ``src/resnet2.py`` of iamalexkorotin/NeuralOptimalTransport,
``src/cunet.py`` of iamalexkorotin/KernelNeuralOptimalTransport. Module names and the
order in which submodules are registered are theirs, so a state dict of these classes
has the keys of the authors' checkpoints. Only the widths are parameters (their
defaults are the authors'); the depth is their fixed 4 Down steps.

- ``UNet(n_channels, n_classes, base_factor)``: the milesial Pytorch-UNet with bilinear
  upsampling: ``DoubleConv`` = (conv3x3 -> BatchNorm -> ReLU) x 2; four ``Down``
  (maxpool 2, DoubleConv); four ``Up`` (bilinear x2 with corners aligned, pad to the skip,
  ``cat([skip, up])``, DoubleConv with ``in // 2`` middle channels); 1x1 ``OutConv``; no
  output activation. Weak NOT feeds ``cat([x, z])`` with ``3 + ZC`` input channels.
- ``CUNet(n_channels, n_classes, z_channels, base_factor)``: the same U-Net with a
  conditional instance norm ``CondINorm`` (``adain1..4``) in front of each Up block:
  ``(h - mean_hw) * rsqrt(var_hw + eps) * relu(conv1x1(z)) + relu(conv1x1(z))``, unbiased
  variance, eps 1e-5, z of shape ``(N, ZC, 1, 1)``. Their ``CondDoubleConv``/``CondUp``
  are defined in cunet.py but unused by ``CUNet``, so they are not repeated here.
- ``ResNet_D(size, nc, nfilter, nfilter_max, res_ratio)``: the WGAN-QC discriminator:
  ``conv_img`` -> LeakyReLU(0.2) -> residual blocks (two per scale, ``AvgPool2d(3, 2, 1)``
  between scales) -> ``fc`` on ``nf0 * 4 * 4`` features with ``nf0 = min(nfilter_max,
  nfilter * 2**nlayers)``; ``ResNetBlock(fin, fout, bn=False)`` computes
  ``lrelu(shortcut(x) + res_ratio * conv_1(lrelu(conv_0(x))))``. As in theirs, the input of
  ``fc`` only has ``nf0`` channels when ``nfilter * 2**(nlayers + 1) >= nfilter_max``.
- ``weights_init_D``: kaiming normal (fan_out, leaky_relu) on conv weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear upsampling by 2, padding to the skip's size, then DoubleConv(in, out, in // 2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        dy, dx = x2.size(2) - x1.size(2), x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels: int, n_classes: int, base_factor: int = 32):
        super().__init__()
        b = base_factor
        self.inc = DoubleConv(n_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // 2)  # bilinear: factor 2
        self.up1 = Up(16 * b, 8 * b // 2)
        self.up2 = Up(8 * b, 4 * b // 2)
        self.up3 = Up(4 * b, 2 * b // 2)
        self.up4 = Up(2 * b, b)
        self.outc = OutConv(b, n_classes)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


class CondINorm(nn.Module):
    def __init__(self, in_channels: int, z_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.shift_conv = nn.Sequential(nn.Conv2d(z_channels, in_channels, kernel_size=1, padding=0, bias=True),
                                        nn.ReLU(True))
        self.scale_conv = nn.Sequential(nn.Conv2d(z_channels, in_channels, kernel_size=1, padding=0, bias=True),
                                        nn.ReLU(True))

    def forward(self, x, z):
        shift = self.shift_conv(z)
        scale = self.scale_conv(z)
        n, c, h, w = x.size()
        flat = x.view(n, c, h * w)
        mean = flat.mean(2, keepdim=True)
        var = flat.var(2, keepdim=True)  # unbiased, as torch's default
        normed = ((flat - mean) * torch.rsqrt(var + self.eps)).view(n, c, h, w)
        return normed * scale + shift


class CUNet(nn.Module):
    def __init__(self, n_channels: int, n_classes: int, z_channels: int, base_factor: int = 32):
        super().__init__()
        b = base_factor
        self.inc = DoubleConv(n_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // 2)
        self.adain1 = CondINorm(16 * b // 2, z_channels)
        self.up1 = Up(16 * b, 8 * b // 2)
        self.adain2 = CondINorm(8 * b // 2, z_channels)
        self.up2 = Up(8 * b, 4 * b // 2)
        self.adain3 = CondINorm(4 * b // 2, z_channels)
        self.up3 = Up(4 * b, 2 * b // 2)
        self.adain4 = CondINorm(2 * b // 2, z_channels)
        self.up4 = Up(2 * b, b)
        self.outc = OutConv(b, n_classes)

    def forward(self, x, z):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(self.adain1(x5, z), x4)
        x = self.up2(self.adain2(x, z), x3)
        x = self.up3(self.adain3(x, z), x2)
        x = self.up4(self.adain4(x, z), x1)
        return self.outc(x)


class ResNetBlock(nn.Module):
    """Their ``ResNetBlock`` with ``bn=False`` (the only form ResNet_D uses): convs with bias."""

    def __init__(self, fin: int, fout: int, res_ratio: float = 0.1):
        super().__init__()
        self.learned_shortcut = fin != fout
        self.fhidden = min(fin, fout)
        self.res_ratio = res_ratio
        self.conv_0 = nn.Conv2d(fin, self.fhidden, 3, stride=1, padding=1, bias=True)
        self.conv_1 = nn.Conv2d(self.fhidden, fout, 3, stride=1, padding=1, bias=True)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, stride=1, padding=0, bias=False)
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        x_s = self.conv_s(x) if self.learned_shortcut else x
        dx = self.conv_1(self.relu(self.conv_0(x)))
        return self.relu(x_s + self.res_ratio * dx)


class ResNet_D(nn.Module):  # noqa: N801 (the authors' name)
    def __init__(self, size: int = 64, nc: int = 3, nfilter: int = 64, nfilter_max: int = 512,
                 res_ratio: float = 0.1):
        super().__init__()
        s0 = self.s0 = 4
        nf, nf_max = nfilter, nfilter_max
        nlayers = int(np.log2(size / s0))
        self.nf0 = min(nf_max, nf * 2**nlayers)
        blocks = [ResNetBlock(min(nf, nf_max), min(nf, nf_max), res_ratio),
                  ResNetBlock(min(nf, nf_max), min(nf * 2, nf_max), res_ratio)]
        for i in range(1, nlayers + 1):
            nf0, nf1 = min(nf * 2**i, nf_max), min(nf * 2**(i + 1), nf_max)
            blocks += [nn.AvgPool2d(3, stride=2, padding=1),
                       ResNetBlock(nf0, nf0, res_ratio),
                       ResNetBlock(nf0, nf1, res_ratio)]
        # registration order as theirs: conv_img, relu, resnet, fc
        self.conv_img = nn.Conv2d(nc, nf, 3, padding=1)
        self.relu = nn.LeakyReLU(0.2, inplace=True)
        self.resnet = nn.Sequential(*blocks)
        self.fc = nn.Linear(self.nf0 * s0 * s0, 1)

    def forward(self, x):
        out = self.resnet(self.relu(self.conv_img(x)))
        return self.fc(out.view(x.size(0), self.nf0 * self.s0 * self.s0))


def weights_init_D(m: nn.Module) -> None:  # noqa: N802 (the authors' name)
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
    elif "BatchNorm" in name:
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)
