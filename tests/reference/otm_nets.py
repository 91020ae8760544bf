"""OTM's image networks, rewritten from the authors' scripts (no ``notpipe`` import).

Sources (LituRout/OptimalTransportModeling at 8287054, ``source/``): ``otm_celeba_64x64.py``
(``TransportMap``, ``ResNet_D``), ``blocks.py`` (``UpsampleConv``, ``ResidualBlock``,
``ConvMeanPool``), ``normalization.py`` (``InstanceNorm2dPlus``) and
``otm_celeba_{denoise,colorization,inpaint}_64x64.py`` (``TransportMap``, ``Psi``; the three
files define the same networks). Attribute names and registration order are theirs; the scripts
wrap G and ψ of generation in ``nn.Sequential`` (keys ``0.…``), which is left out here. Only
the widths are parameters (``features``); the layout is their fixed 64-px one.

Generation:

- ``GenTransportMap(latent_dim, features)``: z ``(N, latent_dim)`` viewed as ``(N, latent_dim, 1, 1)``;
  ``begin_conv`` = 1x1 conv to f, BatchNorm2d(affine, track_running_stats=False), LeakyReLU(0.2);
  ``trans_conv`` = ConvTranspose2d(f, 2f, 4) + the same BN + LeakyReLU (1x1 -> 4x4);
  ``up1..up4`` = UpsampleConv (cat of four copies, PixelShuffle(2), conv 3x3) + BN + LeakyReLU with
  2f -> 4f -> 4f -> 2f -> 2f channels (4 -> 64 px); ``end_conv`` conv 3x3 to 3; tanh.
- ``GenResNetD(features)``: ``begin_conv`` conv 3x3 to f; ``down1..down4`` = ResidualBlock
  f -> 2f -> 4f -> 2f -> f, each halving the size; ``end_conv`` Conv2d(f, 1, 4): ``(N, 1, 1, 1)``.
  ``ResidualBlock(resample='down')``: out = conv2(relu(norm2(conv1(relu(norm1(x)))))) + shortcut(x),
  conv1 3x3 (in -> in), conv2 = ConvMeanPool(in, out, 3), shortcut = ConvMeanPool(in, out, 1);
  ConvMeanPool = conv (padding k // 2) then the average of the four pixels of each 2x2 block.
  ``InstanceNorm2dPlus(C)``: per-channel spatial means mu_c normalised over the channels
  (mean, unbiased variance, eps 1e-5), ``h = instance_norm(x) + alpha * mu_norm``,
  ``out = gamma * h + beta``; alpha, gamma ~ N(1, 0.02), beta = 0.

Restoration:

- ``RestTransportMap(features)``: ``ip`` conv 3x3 to f + BN (batch statistics) + LeakyReLU(0.2);
  ``down1..4`` = [conv3x3, LeakyReLU(0.2), AvgPool2d(3, 2, 1)]; ``up1..4`` = [Upsample(x2, nearest),
  conv3x3, BN, ReLU]; ``y3 = up1(x4) + x3``, ``y2 = up2(y3) + x2``, ``y1 = up3(y2) + x1``,
  ``y = up4(y1) + x``; ``op`` conv 3x3 to 3 + tanh.
- ``RestPsi(features)``: ``down1..4`` as above (the first from 3 channels), ``op`` Linear(f * 16, 1).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def norm_bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=True, track_running_stats=False)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)


class UpsampleConv(nn.Module):
    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(input_dim, output_dim, 3, stride=1, padding=1, bias=True)
        self.pixelshuffle = nn.PixelShuffle(upscale_factor=2)

    def forward(self, inputs):
        out = torch.cat([inputs, inputs, inputs, inputs], dim=1)
        return self.conv(self.pixelshuffle(out))


class GenTransportMap(nn.Module):
    def __init__(self, latent_dim: int = 192, out_channels: int = 3, features: int = 256):
        super().__init__()
        f = features
        self.begin_conv = nn.Sequential(nn.Conv2d(latent_dim, f, kernel_size=1, stride=1, padding=0),
                                        norm_bn(f), nn.LeakyReLU(0.2, inplace=True))
        self.trans_conv = nn.Sequential(nn.ConvTranspose2d(f, 2 * f, kernel_size=4, stride=1, padding=0),
                                        norm_bn(2 * f), nn.LeakyReLU(0.2, inplace=True))
        self.up1 = nn.Sequential(UpsampleConv(2 * f, 4 * f), norm_bn(4 * f), nn.LeakyReLU(0.2, inplace=True))
        self.up2 = nn.Sequential(UpsampleConv(4 * f, 4 * f), norm_bn(4 * f), nn.LeakyReLU(0.2, inplace=True))
        self.up3 = nn.Sequential(UpsampleConv(4 * f, 2 * f), norm_bn(2 * f), nn.LeakyReLU(0.2, inplace=True))
        self.up4 = nn.Sequential(UpsampleConv(2 * f, 2 * f), norm_bn(2 * f), nn.LeakyReLU(0.2, inplace=True))
        self.end_conv = nn.Conv2d(2 * f, out_channels, kernel_size=3, stride=1, padding=1)
        self.output = nn.Tanh()

    def forward(self, x):
        x = x.view(x.size(0), x.size(1), 1, 1)
        x = self.trans_conv(self.begin_conv(x))
        x = self.up4(self.up3(self.up2(self.up1(x))))
        return self.output(self.end_conv(x))


class InstanceNorm2dPlus(nn.Module):
    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.instance_norm = nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.gamma = nn.Parameter(torch.zeros(num_features))
        self.alpha.data.normal_(1, 0.02)
        self.gamma.data.normal_(1, 0.02)
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        means = torch.mean(x, dim=(2, 3))
        m = torch.mean(means, dim=-1, keepdim=True)
        v = torch.var(means, dim=-1, keepdim=True)
        means = (means - m) / torch.sqrt(v + 1e-5)
        h = self.instance_norm(x)
        h = h + means[..., None, None] * self.alpha[..., None, None]
        return self.gamma.view(-1, self.num_features, 1, 1) * h + self.beta.view(-1, self.num_features, 1, 1)


class ConvMeanPool(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(input_dim, output_dim, kernel_size, stride=1, padding=kernel_size // 2, bias=True)

    def forward(self, inputs):
        out = self.conv(inputs)
        return sum([out[:, :, ::2, ::2], out[:, :, 1::2, ::2], out[:, :, ::2, 1::2], out[:, :, 1::2, 1::2]]) / 4.


class ResidualBlockDown(nn.Module):
    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.non_linearity = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(input_dim, input_dim)
        self.normalize2 = InstanceNorm2dPlus(input_dim)
        self.conv2 = ConvMeanPool(input_dim, output_dim, 3)
        self.shortcut = ConvMeanPool(input_dim, output_dim, kernel_size=1)
        self.normalize1 = InstanceNorm2dPlus(input_dim)

    def forward(self, x):
        out = self.non_linearity(self.normalize1(x))
        out = self.conv1(out)
        out = self.non_linearity(self.normalize2(out))
        out = self.conv2(out)
        return self.shortcut(x) + out


class GenResNetD(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 1, features: int = 128):
        super().__init__()
        f = features
        self.begin_conv = nn.Conv2d(in_channels, f, kernel_size=3, stride=1, padding=1)
        self.down1 = nn.Sequential(ResidualBlockDown(f, 2 * f))
        self.down2 = nn.Sequential(ResidualBlockDown(2 * f, 4 * f))
        self.down3 = nn.Sequential(ResidualBlockDown(4 * f, 2 * f))
        self.down4 = nn.Sequential(ResidualBlockDown(2 * f, f))
        self.end_conv = nn.Conv2d(f, out_channels, kernel_size=4, stride=1, padding=0)

    def forward(self, x):
        x = self.begin_conv(x)
        x = self.down4(self.down3(self.down2(self.down1(x))))
        return self.end_conv(x)


def _down(cin: int, cout: int) -> nn.ModuleList:
    return nn.ModuleList([conv3x3(cin, cout), nn.LeakyReLU(0.2), nn.AvgPool2d(kernel_size=3, stride=2, padding=1)])


def _up(f: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Upsample(scale_factor=2), conv3x3(f, f), norm_bn(f), nn.ReLU()])


def _run(module: nn.ModuleList, x):
    for m in module:
        x = m(x)
    return x


class RestTransportMap(nn.Module):
    def __init__(self, channels: int = 3, features: int = 256):
        super().__init__()
        f = features
        self.act = nn.ReLU()
        self.ip = nn.Sequential(nn.Conv2d(channels, f, kernel_size=3, stride=1, padding=1), norm_bn(f),
                                nn.LeakyReLU(0.2, inplace=True))
        self.down1, self.down2, self.down3, self.down4 = (_down(f, f) for _ in range(4))
        self.up1, self.up2, self.up3, self.up4 = (_up(f) for _ in range(4))
        self.op = nn.Sequential(nn.Conv2d(f, channels, kernel_size=3, stride=1, padding=1), nn.Tanh())

    def forward(self, x):
        x = self.ip(x)
        x1 = _run(self.down1, x)
        x2 = _run(self.down2, x1)
        x3 = _run(self.down3, x2)
        x4 = _run(self.down4, x3)
        y3 = _run(self.up1, x4) + x3
        y2 = _run(self.up2, y3) + x2
        y1 = _run(self.up3, y2) + x1
        y = _run(self.up4, y1) + x
        return self.op(y)


class RestPsi(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 256):
        super().__init__()
        f = features
        self.down1 = _down(in_channels, f)
        self.down2, self.down3, self.down4 = (_down(f, f) for _ in range(3))
        self.op = nn.Linear(f * 4 * 4, 1)

    def forward(self, x):
        for d in (self.down1, self.down2, self.down3, self.down4):
            x = _run(d, x)
        return self.op(x.view(x.shape[0], -1))
