"""CT-D2GAN-style networks: conv encoder per frame, convolutional transformer over time, conv decoder;
an image discriminator on the predicted frame and a video discriminator on clip + predicted frame."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.video.prediction.config import PredictorConfig


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


def temporal_encoding(t: int, c: int) -> torch.Tensor:
    """Sinusoidal positional encoding over time, shape (T, C)."""
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, c, 2, dtype=torch.float32) * (-math.log(10000.0) / c))
    pe = torch.zeros(t, c)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : c // 2]
    return pe


class Generator(nn.Module):
    """Predict frame t from frames t-T..t-1: (B, T, 1, S, S) in [-1, 1] -> (B, 1, S, S) in [-1, 1].

    Per frame: a space-to-depth stem and a conv encoder to (C3, S/8, S/8) and its conv Q/K/V (cached across overlapping windows
    when scoring). Per window: temporal multi-head self-attention at every location over the T maps
    (sinusoidal time encoding added to Q and K), fusion over time, a conv feed-forward, and a U-Net
    decoder with skips from the last past frame (and its change since the one before) that predicts the change of that frame.
    """

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        c = cfg.channels  # past >= 2: the decoder uses the latest change (checked by PredictorConfig)
        self.cfg = cfg
        self.s2, self.s3, self.s4 = _conv(4, c[0]), _conv(c[0], c[1], 2), _conv(c[1], c[2], 2)
        self.norm = nn.GroupNorm(1, c[2])
        self.qkv = nn.Conv2d(c[2], 3 * c[2], 3, 1, 1)
        self.register_buffer("pos", temporal_encoding(cfg.past, c[2])[:, :, None, None], persistent=False)
        self.proj = nn.Conv2d(c[2], c[2], 1)
        self.fuse = nn.Conv2d(cfg.past * c[2], c[2], 1)
        self.ff = nn.Sequential(nn.GroupNorm(1, c[2]), nn.Conv2d(c[2], 2 * c[2], 3, 1, 1),
                                nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * c[2], c[2], 1))
        self.up3, self.dec3 = nn.ConvTranspose2d(c[2], c[1], 2, 2), _conv(3 * c[1], c[1])
        self.up2, self.dec2 = nn.ConvTranspose2d(c[1], c[0], 2, 2), _conv(3 * c[0], c[0])
        self.out = nn.Sequential(nn.Conv2d(c[0], 4, 3, 1, 1), nn.PixelShuffle(2))

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Per-frame features of frames (N, 1, S, S): [f4, qkv, f3, f2], each (N, C, h, w)."""
        f2 = self.s2(F.pixel_unshuffle(frames, 2))
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        return [f4, self.qkv(self.norm(f4)), f3, f2]

    def predict(self, feats: list[torch.Tensor], idx: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Windows idx (B, T) into per-frame `feats`, last past frame (B, 1, S, S) -> prediction (B, 1, S, S)."""
        f4, qkv, f3, f2 = feats
        b, t = idx.shape
        c, h, w = f4.shape[1:]
        nh = self.cfg.heads
        x = f4[idx]  # (B, T, C, h, w)
        q, k, v = qkv[idx].reshape(b, t, 3, c, h, w).unbind(2)
        q = (q + self.pos).reshape(b, t, nh, c // nh, h, w)
        k = (k + self.pos).reshape(b, t, nh, c // nh, h, w)
        v = v.reshape(b, t, nh, c // nh, h, w)
        att = (torch.einsum("bthdxy,bshdxy->bhtsxy", q, k) / math.sqrt(c // nh)).softmax(dim=3)
        o = torch.einsum("bhtsxy,bshdxy->bthdxy", att, v).reshape(b * t, c, h, w)
        x = x + self.proj(o).reshape(b, t, c, h, w)
        z = self.fuse(x.reshape(b, t * c, h, w))
        z = z + self.ff(z)
        j, i = idx[:, -1], idx[:, -2]  # skips: last frame's features and their latest change (fine motion)
        z = self.dec3(torch.cat([self.up3(z), f3[j], f3[j] - f3[i]], 1))
        z = self.dec2(torch.cat([self.up2(z), f2[j], f2[j] - f2[i]], 1))
        delta = self.out(z)
        return torch.tanh(last + delta)  # predict the change of the last frame

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, T, 1, S, S) of past frames in [-1, 1] -> predicted next frame (B, 1, S, S)."""
        b, t = clip.shape[:2]
        feats = self.encode(clip.reshape(b * t, *clip.shape[2:]))
        idx = torch.arange(b * t, device=clip.device).reshape(b, t)
        return self.predict(feats, idx, clip[:, -1])


class ImageDiscriminator(nn.Module):
    """PatchGAN on one frame: (B, 1, S, S) -> logits (B, 1, S/8, S/8)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, S, S) -> patch logits."""
        return self.net(x)


class VideoDiscriminator(nn.Module):
    """3D-conv PatchGAN on the clip with its (real or predicted) next frame at half resolution:
    (B, 1, T+1, S, S) -> logits (B, 1, t', S/16, S/16)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, c, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2, True),
            nn.Conv3d(c, 2 * c, (3, 4, 4), (2, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2, True),
            nn.Conv3d(2 * c, 4 * c, (3, 4, 4), (2, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2, True),
            nn.Conv3d(4 * c, 1, (1, 3, 3), 1, (0, 1, 1)))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, 1, T+1, S, S) -> patch logits."""
        return self.net(F.avg_pool3d(clip, (1, 2, 2)))


def gradient_loss(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean |(|dx pred| - |dx real|)| + same for dy, over (B, 1, S, S)."""
    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()

    px, py = grads(pred)
    rx, ry = grads(real)
    return (px - rx).abs().mean() + (py - ry).abs().mean()


def psnr_map(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Squared error (B, 1, S, S) of frames in [-1, 1], rescaled to [0, 1] intensities."""
    return ((pred - real) * 0.5).square()


def frame_psnr(err: torch.Tensor, patch: int = 0) -> torch.Tensor:
    """PSNR (B,) from squared-error maps (B, 1, S, S): whole frame, or of the worst `patch`-sized window."""
    if patch > 0:
        mse = F.avg_pool2d(err, patch, stride=max(1, patch // 2)).flatten(1).amax(1)
    else:
        mse = err.flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-8))
