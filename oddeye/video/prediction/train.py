"""Training of the frame predictor: GAN with intensity + gradient + image/video adversarial losses,
seeded, wall-clock budget, tqdm losses, resumable safetensors checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from oddeye.core.errors import InputError, ModelError
from oddeye.video.prediction.config import PredictorConfig, TrainConfig
from oddeye.video.prediction.model import Generator, ImageDiscriminator, VideoDiscriminator, gradient_loss

CHECKPOINT = "checkpoint.safetensors"
STATE = "train_state.json"


def to_model_range(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (...) -> float tensor in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    return t.float().div_(127.5).sub_(1.0)


def _adam_state(opt: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter], prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in named.items():
        st = opt.state.get(p)
        if st:
            for k, v in st.items():
                out[f"{prefix}.{name}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(float(v))).detach().cpu()
    return out


def _load_adam(opt: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter], prefix: str,
               tensors: dict[str, torch.Tensor]) -> None:
    for name, p in named.items():
        keys = [k for k in ("step", "exp_avg", "exp_avg_sq") if f"{prefix}.{name}.{k}" in tensors]
        if keys:
            opt.state[p] = {k: tensors[f"{prefix}.{name}.{k}"].to(p.device) for k in keys}


class Trainer:
    """Holds G, the two discriminators and their optimisers; run() trains until the budget is spent."""

    def __init__(self, cfg: PredictorConfig, tcfg: TrainConfig, videos: list[np.ndarray], device: str = "cpu") -> None:
        lead = cfg.past * tcfg.stride
        usable = [v for v in videos if v.shape[0] > lead]
        if not usable:
            raise InputError(f"training needs videos with more than past x stride = {lead} frames",
                             "give longer clips or a smaller --past")
        self.cfg, self.tcfg, self.videos, self.device = cfg, tcfg, usable, device
        torch.manual_seed(tcfg.seed)
        self.g = Generator(cfg).to(device)
        self.di = ImageDiscriminator(cfg.d_channels).to(device)
        self.dv = VideoDiscriminator(cfg.d_channels).to(device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=tcfg.lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(list(self.di.parameters()) + list(self.dv.parameters()), lr=tcfg.lr_d,
                                      betas=(0.5, 0.999))
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []
        lens = np.array([v.shape[0] - lead for v in usable], np.float64)
        self._p = lens / lens.sum()

    def _batch(self, rng: np.random.Generator) -> torch.Tensor:
        """Random windows (B, T+1, 1, S, S) in [-1, 1], frames `stride` apart."""
        t, k = self.cfg.past, self.tcfg.stride
        vids = rng.choice(len(self.videos), size=self.tcfg.batch_size, p=self._p)
        clips = []
        for v in vids:
            arr = self.videos[v]
            s = int(rng.integers(0, arr.shape[0] - t * k))
            clips.append(arr[s: s + t * k + 1: k])
        return to_model_range(np.stack(clips)[:, :, None]).to(self.device)

    def train_step(self, clip: torch.Tensor) -> dict[str, float]:
        """One D and one G update on clip (B, T+1, 1, S, S); returns the losses."""
        past, real = clip[:, :-1], clip[:, -1]
        pred = self.g(past)
        vid = lambda x: torch.cat([past, x[:, None]], 1).transpose(1, 2)  # noqa: E731 (B, 1, T+1, S, S)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss = 0.5 * ((self.di(real) - 1).square().mean() + self.di(pred.detach()).square().mean()
                        + (self.dv(vid(real)) - 1).square().mean() + self.dv(vid(pred.detach())).square().mean())
        d_loss.backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        l_int = F.mse_loss(pred, real)
        l_grad = gradient_loss(pred, real)
        l_adv = 0.5 * ((self.di(pred) - 1).square().mean() + (self.dv(vid(pred)) - 1).square().mean())
        loss = self.tcfg.w_int * l_int + self.tcfg.w_grad * l_grad + self.tcfg.w_adv * l_adv
        loss.backward()
        self.opt_g.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in (("g", loss), ("int", l_int), ("grad", l_grad), ("adv", l_adv), ("d", d_loss))}

    def run(self, out: Path | None = None, callback: Callable[[Trainer], None] | None = None,
            callback_every_s: float = 0.0, progress: bool = True) -> Trainer:
        """Train for tcfg.minutes (and/or max_steps); checkpoint to `out`; call `callback` every N train-seconds."""
        budget = self.tcfg.minutes * 60.0
        start_step = self.step
        bar = tqdm(total=round(budget), unit="s", desc="train video-prediction", disable=not progress,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s [{elapsed}<{remaining}] {postfix}")
        spent = 0.0
        last_ckpt = last_cb = 0.0
        self.g.train()
        while spent < budget and (self.tcfg.max_steps is None or self.step - start_step < self.tcfg.max_steps):
            rng = np.random.default_rng([self.tcfg.seed, self.step])  # resumable: the batch depends on the step
            t0 = time.perf_counter()
            losses = self.train_step(self._batch(rng))
            dt = time.perf_counter() - t0
            spent += dt
            self.train_seconds += dt
            if self.step % 10 == 0 or self.step == start_step + 1:
                self.history.append({"step": self.step, "minutes": self.train_seconds / 60, **losses})
                bar.set_postfix_str(f"step {self.step} " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
            bar.update(min(round(spent), bar.total) - bar.n)
            if out is not None and spent - last_ckpt >= self.tcfg.checkpoint_every_s:
                self.save_checkpoint(out)
                last_ckpt = spent
            if callback is not None and callback_every_s > 0 and spent - last_cb >= callback_every_s:
                callback(self)
                self.g.train()
                last_cb = spent
        bar.close()
        self.g.eval()
        if out is not None:
            self.save_checkpoint(out)
        return self

    def save_checkpoint(self, out: Path) -> Path:
        """Write weights + optimiser moments (safetensors) and the step/time state (json) under `out`."""
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for prefix, m in (("g", self.g), ("di", self.di), ("dv", self.dv)):
            tensors.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in m.state_dict().items()})
        tensors.update(_adam_state(self.opt_g, dict(self.g.named_parameters()), "opt_g"))
        tensors.update(_adam_state(self.opt_d, {**{f"di.{k}": v for k, v in self.di.named_parameters()},
                                                **{f"dv.{k}": v for k, v in self.dv.named_parameters()}}, "opt_d"))
        tmp = out / (CHECKPOINT + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(out / CHECKPOINT)
        state = {"step": self.step, "train_seconds": self.train_seconds, "model": self.cfg.to_dict(),
                 "train": self.tcfg.to_dict(), "history": self.history[-200:]}
        (out / STATE).write_text(json.dumps(state, indent=1))
        return out / CHECKPOINT

    def load_checkpoint(self, out: Path) -> None:
        """Continue from a checkpoint written by save_checkpoint (same model sizes)."""
        ck, st = out / CHECKPOINT, out / STATE
        if not ck.is_file() or not st.is_file():
            raise ModelError(f"no checkpoint to resume in {out}", "run without --resume to start fresh")
        state = json.loads(st.read_text())
        if PredictorConfig.from_dict(state["model"]) != self.cfg:
            raise ModelError(f"the checkpoint in {out} has other model sizes ({state['model']})",
                             "resume with the same settings or start fresh in another --out")
        tensors = load_file(str(ck))
        for prefix, m in (("g", self.g), ("di", self.di), ("dv", self.dv)):
            m.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        _load_adam(self.opt_g, dict(self.g.named_parameters()), "opt_g", tensors)
        _load_adam(self.opt_d, {**{f"di.{k}": v for k, v in self.di.named_parameters()},
                                **{f"dv.{k}": v for k, v in self.dv.named_parameters()}}, "opt_d", tensors)
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.history = list(state.get("history", []))
