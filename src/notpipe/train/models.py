"""Image networks of NOT: the U-Net transport map T and the ResNet potential f.

Architectures follow the authors' code layer for layer:

- ``UNet``: ``src/unet.py`` of iamalexkorotin/NeuralOptimalTransport (the milesial
  Pytorch-UNet with a ``base_factor`` width, bilinear upsampling, no final tanh).
  Weak NOT feeds per-pixel noise as extra input channels (``UNet(3 + ZC, 3, 48)``).
- Kernel NOT's conditional U-Net: ``src/cunet.py`` (``CUNet``) of
  iamalexkorotin/KernelNeuralOptimalTransport. The encoder and decoder keep their
  BatchNorm; a conditional instance norm (``CondINorm``) of the latent z is inserted
  at the bottleneck and in front of every up-block except the last:
  ``out = norm(h) * relu(W_s z + b_s) + relu(W_b z + b_b)`` with the unbiased
  per-channel variance and eps 1e-5 inside the rsqrt, exactly as theirs.
- ``ResNetD``: ``ResNet_D`` of NOT's ``src/resnet2.py`` (the WGAN-QC variant of the
  Mescheder et al. GAN-stability discriminator): two residual blocks per scale,
  ``out = lrelu(shortcut(x) + res_ratio * conv_1(lrelu(conv_0(x))))``, initialised
  with the authors' ``weights_init_D`` (kaiming normal, fan_out, leaky_relu, convs
  only; biases and the final Linear keep PyTorch's default init).

Generalisations (identical to the authors at their settings): ``depth`` Down steps
instead of a fixed 4; ``ResNetD`` sizes its final Linear from the real channel count,
which also makes sizes below ``s0 * nf_max / nf`` work (the authors' code crashes there).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _double_conv(cin: int, cout: int, mid: int | None = None) -> nn.Sequential:
    """(conv3x3 -> BatchNorm -> ReLU) x 2, as the authors' ``DoubleConv``."""
    mid = mid or cout
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CondInstanceNorm(nn.Module):
    """Conditional instance norm of Kernel NOT (``CondINorm``).

    ``out = (h - mean) / sqrt(var + eps) * relu(scale(z)) + relu(shift(z))`` with
    per-sample, per-channel mean and unbiased variance over H, W. ``scale`` and
    ``shift`` are ``Linear(latent_dim, C)`` (the authors' 1x1 convs on a
    ``(N, latent_dim, 1, 1)`` z: same parameters, same function).
    """

    def __init__(self, channels: int, latent_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Linear(latent_dim, channels)
        self.shift = nn.Linear(latent_dim, channels)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(h, dim=(2, 3), keepdim=True, correction=1)
        scale = F.relu(self.scale(z))[:, :, None, None]
        shift = F.relu(self.shift(z))[:, :, None, None]
        return (h - mean) * torch.rsqrt(var + self.eps) * scale + shift


class UNet(nn.Module):
    """Transport map T: the authors' U-Net, optionally stochastic.

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels of x and of T(x).
    base : int
        Width of the first level (authors: 48); levels have base * 2**k channels,
        the bottleneck base * 2**depth // 2 (bilinear factor 2).
    noise_channels : int
        Weak NOT: z of shape (N, noise_channels, H, W) is concatenated to x.
    latent_dim : int
        Kernel NOT: z of shape (N, latent_dim) (or (N, latent_dim, 1, 1)) drives
        ``depth`` conditional instance norms placed as in the authors' ``CUNet``.
    depth : int
        Number of Down steps (authors: 4); H and W must be divisible by 2**depth.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 48,
                 noise_channels: int = 0, latent_dim: int = 0, depth: int = 4):
        super().__init__()
        if noise_channels < 0 or latent_dim < 0 or (noise_channels > 0 and latent_dim > 0):
            raise ValueError("UNet: at most one of noise_channels, latent_dim may be > 0 "
                             f"(got {noise_channels}, {latent_dim})")
        if depth < 1 or base < 1:
            raise ValueError(f"UNet: depth and base must be >= 1 (got {depth}, {base})")
        self.noise_channels, self.latent_dim, self.depth = noise_channels, latent_dim, depth
        self.inc = _double_conv(in_channels + noise_channels, base)
        widths = [base * 2**k for k in range(depth)] + [base * 2**depth // 2]
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[k], widths[k + 1]))
            for k in range(depth))
        self.ups = nn.ModuleList()
        for j in range(depth):  # authors' Up(in, out, mid=in // 2) after cat([skip, up(x)])
            cin = base * 2**(depth - j)
            cout = base if j == depth - 1 else cin // 4
            self.ups.append(_double_conv(cin, cout, cin // 2))
        self.norms = nn.ModuleList(  # CIN on the input of every Up block (authors' adain1..4)
            CondInstanceNorm(base * 2**(depth - 1 - j), latent_dim) for j in range(depth)
        ) if latent_dim else None
        self.outc = nn.Conv2d(base, out_channels, 1)

    def _check(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor | None:
        n, _, h, w = x.shape
        k = 2**self.depth
        if h % k or w % k:
            raise ValueError(f"UNet(depth={self.depth}): H, W = {h}, {w} must be divisible by {k}")
        if self.noise_channels:
            want = (n, self.noise_channels, h, w)
            if z is None or tuple(z.shape) != want:
                got = None if z is None else tuple(z.shape)
                raise ValueError(f"UNet(noise_channels): z of shape {want} required, got {got}")
        elif self.latent_dim:
            if z is None or z.shape[0] != n or z[0].numel() != self.latent_dim:
                got = None if z is None else tuple(z.shape)
                raise ValueError(f"UNet(latent_dim): z of shape ({n}, {self.latent_dim}) "
                                 f"required, got {got}")
            return z.reshape(n, self.latent_dim)
        elif z is not None:
            raise ValueError("UNet: deterministic map (noise_channels = latent_dim = 0) got a z")
        return z

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = self._check(x, z)
        if self.noise_channels:
            x = torch.cat([x, z], dim=1)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for j, up in enumerate(self.ups):
            if self.norms is not None:
                h = self.norms[j](h, z)
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True)
            h = up(torch.cat([skips.pop(), h], dim=1))
        return self.outc(h)


class ResBlock(nn.Module):
    """Authors' ``ResNetBlock(fin, fout, bn=False)``.

    ``out = lrelu(x_s + res_ratio * conv_1(lrelu(conv_0(x))))``; ``x_s`` is ``x`` or a
    bias-free 1x1 conv when ``fin != fout``; hidden width ``min(fin, fout)``.
    """

    def __init__(self, fin: int, fout: int, res_ratio: float = 0.1):
        super().__init__()
        hidden = min(fin, fout)
        self.res_ratio = res_ratio
        self.conv_0 = nn.Conv2d(fin, hidden, 3, padding=1)
        self.conv_1 = nn.Conv2d(hidden, fout, 3, padding=1)
        self.conv_s = nn.Conv2d(fin, fout, 1, bias=False) if fin != fout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_s = x if self.conv_s is None else self.conv_s(x)
        dx = self.conv_1(F.leaky_relu(self.conv_0(x), 0.2, inplace=True))
        return F.leaky_relu(x_s + self.res_ratio * dx, 0.2, inplace=True)


class ResNetD(nn.Module):
    """Potential f: the authors' ``ResNet_D``; returns shape ``(N,)``.

    Parameters
    ----------
    size : int
        Input resolution; must be ``s0 * 2**k`` (k >= 0 down-samplings).
    in_channels, nf, nf_max, s0, res_ratio
        Image channels, base and maximal width, final spatial size, residual weight.
    """

    def __init__(self, size: int = 128, in_channels: int = 3, nf: int = 64, nf_max: int = 512,
                 s0: int = 4, res_ratio: float = 0.1):
        super().__init__()
        nlayers = round(math.log2(size / s0)) if size >= s0 > 0 else -1
        if nlayers < 0 or s0 * 2**nlayers != size:
            raise ValueError(f"ResNetD: size must be s0 * 2**k with s0={s0}, got {size}")
        self.size = size
        width = lambda i: min(nf * 2**i, nf_max)  # noqa: E731
        blocks = [ResBlock(width(0), width(0), res_ratio), ResBlock(width(0), width(1), res_ratio)]
        for i in range(1, nlayers + 1):
            blocks += [nn.AvgPool2d(3, stride=2, padding=1),
                       ResBlock(width(i), width(i), res_ratio),
                       ResBlock(width(i), width(i + 1), res_ratio)]
        self.conv_img = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.resnet = nn.Sequential(*blocks)
        self.fc = nn.Linear(width(nlayers + 1) * s0 * s0, 1)
        for m in self.modules():  # authors' weights_init_D: convs only, biases untouched
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != self.size or x.shape[-1] != self.size:
            raise ValueError(f"ResNetD(size={self.size}) got input {tuple(x.shape)}")
        out = self.resnet(F.leaky_relu(self.conv_img(x), 0.2, inplace=True))
        return self.fc(out.flatten(1)).squeeze(1)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def conv_flops(model: nn.Module, input_shape, z_shape=None) -> int:
    """Approximate forward FLOPs for one sample: 2 x multiply-accumulates of Conv2d and Linear.

    Norms, activations, pooling, upsampling and biases are not counted. The model
    runs once in eval mode on a batch of 1 with meta tensors swapped in for its
    parameters and buffers (no compute, nothing of the model is changed); if an op
    lacks a meta kernel it runs on zeros on the model's device instead.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(x)`` or ``model(x, z)``.
    input_shape, z_shape : tuple of int
        Shapes of one sample of x and z, without the batch dimension.
    """
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            total += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        args_of = lambda dev: [torch.zeros(1, *s, device=dev)  # noqa: E731
                               for s in (input_shape, z_shape) if s is not None]
        try:
            state = {k: torch.empty_like(v, device="meta") for k, v in
                     [*model.named_parameters(), *model.named_buffers()]}
            with torch.no_grad():
                torch.func.functional_call(model, state, tuple(args_of("meta")))
        except (NotImplementedError, RuntimeError):
            total = 0
            dev = next(iter(model.parameters()), torch.empty(0)).device
            with torch.no_grad():
                model(*args_of(dev))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
    return int(total)
