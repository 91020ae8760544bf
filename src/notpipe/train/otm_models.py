"""Image networks of OTM (Rout, Korotin, Burnaev, ICLR 2022): the authors' transport maps G and
potentials ψ for generation from noise and for unpaired restoration.

Layer for layer as LituRout/OptimalTransportModeling (commit 8287054), ``source/``:

- ``OTMGenerator``: ``TransportMap`` of ``otm_celeba_64x64.py``, DCGAN-like. The 192-d noise z
  (3x8x8) as a ``(192, 1, 1)`` map -> 1x1 conv to ``features`` -> ConvTranspose 4x4 to
  ``2 features`` at 4x4 -> four ``UpsampleConv`` (``blocks.py``: the input repeated 4 times along
  the channels, PixelShuffle(2), conv 3x3) to 64x64 with ``4f, 4f, 2f, 2f`` channels -> conv 3x3
  to RGB -> tanh. Every conv is followed by ``BatchNorm2d(track_running_stats=False)`` (batch
  statistics in training *and* evaluation) and LeakyReLU(0.2).
- ``OTMGenerationPotential``: their ``ResNet_D`` "from NCSN": conv 3x3 to ``features``, four
  residual blocks with ``resample='down'`` (``blocks.ResidualBlock``: InstanceNorm++ -> ReLU ->
  conv 3x3 -> InstanceNorm++ -> ReLU -> conv 3x3 + 2x2 mean pool, shortcut 1x1 conv + mean
  pool) with ``2f, 4f, 2f, f`` channels, then a 4x4 conv to one number.
  ``normalization.InstanceNorm2dPlus``: instance norm plus the normalised per-channel means
  times α, then ``γ h + β``; α, γ ~ N(1, 0.02), β = 0.
- ``OTMRestorationMap``: ``TransportMap`` of ``otm_celeba_{denoise,colorization,inpaint}_64x64.py``:
  conv 3x3 + BatchNorm (batch statistics) + LeakyReLU(0.2); four (conv 3x3, LeakyReLU(0.2),
  AvgPool 3/2/1); four (nearest upsampling x2, conv 3x3, BatchNorm, ReLU), each added to the
  encoder map of its size (additive skips); conv 3x3 to RGB, tanh. All at ``features`` (256).
- ``OTMRestorationPotential``: their ``Psi``: four (conv 3x3, LeakyReLU(0.2), AvgPool 3/2/1) at
  ``features`` (256), then ``Linear(features * 4 * 4, 1)``; no normalisation.

Every layer keeps PyTorch's default initialisation (the scripts set none).

Two conventions of ours:

* The potentials return **f = -ψ**: the trainer's losses use f with the opposite sign of OTM's
  ψ (``L_f = mean f(T x) - mean f(y)`` is OTM's ψ loss without its dot term; see
  :mod:`notpipe.core.trainer`). Same parameters, same gradients.
* The trainer feeds the generator the *embedded* noise x = Q(z) (bicubic upsampling,
  :mod:`notpipe.data.noise_source`), the image the cost and evaluation compare T(x) with.
  ``OTMGenerator`` reads z back as ``P x`` with P the pseudo-inverse of Q (Q is linear and
  injective), so it computes the authors' G(z) (up to float rounding: ~1e-7 of |z| in fp32);
  an input already of z's shape is taken as z.

Generalisations (identical at the authors' 64 px): the number of up/down blocks is
``log2(size / 4)``; for fewer or more than four the generator's widths are
``[4f] * (n - 2) + [2f, 2f]`` (last n) and the generation potential's
``[2f] + [4f] * (n - 3) + [2f, f]`` (last n).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from notpipe.data.noise_source import embed

#: the image networks a run's ``model.arch`` chooses (``unet``: notpipe.train.models)
ARCHS = ("unet", "otm_generation", "otm_restoration")


def blocks_for(size: int) -> int:
    """Up/down blocks between 4x4 and ``size`` (``size = 4 * 2**n``, n >= 1); ValueError otherwise."""
    n = round(math.log2(size / 4)) if size >= 8 else 0
    if n < 1 or 4 * 2**n != size:
        raise ValueError(f"OTM networks: image size must be 4 * 2**n with n >= 1 (8, 16, 32, 64, ...), got {size}")
    return n


def _bn(c: int) -> nn.BatchNorm2d:
    """The authors' ``BatchNorm2d(affine=True, track_running_stats=False)``: batch statistics always."""
    return nn.BatchNorm2d(c, affine=True, track_running_stats=False)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class UpsampleConv(nn.Module):
    """``blocks.UpsampleConv``: the input four times along the channels, PixelShuffle(2), conv 3x3."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv3(cin, cout)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.shuffle(torch.cat([x, x, x, x], dim=1)))


def pseudo_inverse_of_embedding(shape, upsample: int) -> torch.Tensor:
    """``P`` (h*w, H*W) with ``P @ Q(z)[c].flatten() = z[c].flatten()``: Q's pseudo-inverse, float64."""
    _, h, w = (int(v) for v in shape)
    basis = torch.eye(h * w, dtype=torch.float64).view(h * w, 1, h, w)
    q = embed(basis, int(upsample)).flatten(1)  # row k: Q of the k-th basis map
    return torch.linalg.pinv(q.T)


class OTMGenerator(nn.Module):
    """OTM's generation map G (module docstring); ``x``: Q(z) ``(N, C, h*k, w*k)`` or z ``(N, C, h, w)``.

    Parameters
    ----------
    noise_shape : (C, h, w)
        z's shape (OTM: 3, 8, 8); G's input has ``C * h * w`` channels.
    upsample : int
        Q's factor; the image size is ``h * upsample``.
    features : int
        ``f`` (OTM: 256).
    """

    def __init__(self, noise_shape=(3, 8, 8), upsample: int = 8, features: int = 256, out_channels: int = 3):
        super().__init__()
        self.noise_shape = tuple(int(v) for v in noise_shape)
        c, h, w = self.noise_shape
        if h != w:
            raise ValueError(f"OTMGenerator: square noise required, got {h}x{w}")
        self.size = h * int(upsample)
        n = blocks_for(self.size)
        latent, f = c * h * w, int(features)
        self.begin_conv = nn.Sequential(nn.Conv2d(latent, f, 1), _bn(f), nn.LeakyReLU(0.2, inplace=True))
        self.trans_conv = nn.Sequential(nn.ConvTranspose2d(f, 2 * f, 4), _bn(2 * f), nn.LeakyReLU(0.2, inplace=True))
        widths = [2 * f] + ([4 * f] * (n - 2) + [2 * f, 2 * f])[-n:]
        self.ups = nn.ModuleList(
            nn.Sequential(UpsampleConv(widths[i], widths[i + 1]), _bn(widths[i + 1]), nn.LeakyReLU(0.2, inplace=True))
            for i in range(n))
        self.end_conv = _conv3(widths[-1], out_channels)
        self.register_buffer("unembed", pseudo_inverse_of_embedding(self.noise_shape, upsample).float(),
                             persistent=False)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """z as G's input ``(N, C*h*w, 1, 1)`` from Q(z) (or from z itself)."""
        n = x.shape[0]
        if tuple(x.shape[1:]) == self.noise_shape:
            return x.reshape(n, -1, 1, 1)
        if tuple(x.shape[1:]) != (self.noise_shape[0], self.size, self.size):
            z_shape = ", ".join(map(str, self.noise_shape))
            raise ValueError(f"OTMGenerator: input of shape {tuple(x.shape)}; expected Q(z) "
                             f"(N, {self.noise_shape[0]}, {self.size}, {self.size}) or z (N, {z_shape})")
        z = x.reshape(n, x.shape[1], -1) @ self.unembed.to(x.dtype).T
        return z.reshape(n, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trans_conv(self.begin_conv(self.latent(x)))
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.end_conv(h))


class InstanceNormPlus(nn.Module):
    """``normalization.InstanceNorm2dPlus`` (NCSN's InstanceNorm++), with bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.alpha = nn.Parameter(torch.zeros(channels).normal_(1, 0.02))
        self.gamma = nn.Parameter(torch.zeros(channels).normal_(1, 0.02))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = x.mean(dim=(2, 3))
        v, m = torch.var_mean(means, dim=-1, keepdim=True)  # unbiased, over the channels
        means = (means - m) / torch.sqrt(v + 1e-5)
        h = F.instance_norm(x, eps=1e-5) + means[..., None, None] * self.alpha[:, None, None]
        return self.gamma.view(1, -1, 1, 1) * h + self.beta.view(1, -1, 1, 1)


class ConvMeanPool(nn.Module):
    """``blocks.ConvMeanPool``: a conv (padding k // 2), then the mean of each 2x2 block."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return (h[:, :, ::2, ::2] + h[:, :, 1::2, ::2] + h[:, :, ::2, 1::2] + h[:, :, 1::2, 1::2]) / 4.0


class DownBlock(nn.Module):
    """``blocks.ResidualBlock(cin, cout, resample='down', act=ReLU, normalization=InstanceNorm2dPlus)``.

    Parameters are registered in the authors' order (conv1, normalize2, conv2, shortcut, normalize1).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv3(cin, cin)
        self.normalize2 = InstanceNormPlus(cin)
        self.conv2 = ConvMeanPool(cin, cout, 3)
        self.shortcut = ConvMeanPool(cin, cout, 1)
        self.normalize1 = InstanceNormPlus(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.normalize1(x)))
        h = self.conv2(F.relu(self.normalize2(h)))
        return self.shortcut(x) + h


class OTMGenerationPotential(nn.Module):
    """f = -ψ with ψ OTM's generation potential (their ``ResNet_D(features=128)``); returns ``(N,)``."""

    def __init__(self, size: int = 64, features: int = 128, in_channels: int = 3):
        super().__init__()
        n = blocks_for(size)
        self.size, f = size, int(features)
        mult = [2] + [4] * (n - 3) + [2, 1] if n >= 3 else [2, 1][-n:]
        widths = [f] + [m * f for m in mult]
        self.begin_conv = _conv3(in_channels, f)
        self.downs = nn.Sequential(*(DownBlock(widths[i], widths[i + 1]) for i in range(n)))
        self.end_conv = nn.Conv2d(widths[-1], 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"OTMGenerationPotential(size={self.size}) got input {tuple(x.shape)}")
        return -self.end_conv(self.downs(self.begin_conv(x))).flatten()


def _down(cin: int, cout: int) -> nn.Sequential:
    """The restoration scripts' encoder step: conv 3x3, LeakyReLU(0.2), AvgPool2d(3, 2, 1)."""
    return nn.Sequential(_conv3(cin, cout), nn.LeakyReLU(0.2), nn.AvgPool2d(3, stride=2, padding=1))


class OTMRestorationMap(nn.Module):
    """OTM's restoration map G: conv encoder-decoder with additive skips (module docstring)."""

    def __init__(self, size: int = 64, features: int = 256, channels: int = 3):
        super().__init__()
        n = blocks_for(size)
        f = int(features)
        self.size = size
        self.ip = nn.Sequential(_conv3(channels, f), _bn(f), nn.LeakyReLU(0.2, inplace=True))
        self.downs = nn.ModuleList(_down(f, f) for _ in range(n))
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2), _conv3(f, f), _bn(f), nn.ReLU()) for _ in range(n))
        self.op = nn.Sequential(_conv3(f, channels), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"OTMRestorationMap(size={self.size}) got input {tuple(x.shape)}")
        skips = [self.ip(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y) + skips.pop()
        return self.op(y)


class OTMRestorationPotential(nn.Module):
    """f = -ψ with ψ OTM's restoration potential (their ``Psi``); returns ``(N,)``."""

    def __init__(self, size: int = 64, features: int = 256, in_channels: int = 3):
        super().__init__()
        n = blocks_for(size)
        f = int(features)
        self.size = size
        self.downs = nn.Sequential(*(_down(in_channels if i == 0 else f, f) for i in range(n)))
        self.op = nn.Linear(f * 4 * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"OTMRestorationPotential(size={self.size}) got input {tuple(x.shape)}")
        return -self.op(self.downs(x).flatten(1)).squeeze(1)


def build(arch: str, size: int, model: dict, noise: dict | None = None) -> tuple[nn.Module, nn.Module]:
    """T and f of an OTM ``model.arch`` (``t_base``: G's features, ``f_nf``: ψ's)."""
    if arch == "otm_generation":
        if noise is None:
            raise ValueError("model.arch otm_generation: the run's source must be noise (with its noise block)")
        T = OTMGenerator(noise["shape"], noise["upsample"], model["t_base"])
        if T.size != size:
            raise ValueError(f"OTMGenerator: noise {noise['shape']} upsampled by {noise['upsample']} is not {size} px")
        return T, OTMGenerationPotential(size, model["f_nf"])
    if arch == "otm_restoration":
        return OTMRestorationMap(size, model["t_base"]), OTMRestorationPotential(size, model["f_nf"])
    raise ValueError(f"unknown OTM model.arch {arch!r}; allowed: otm_generation, otm_restoration")
