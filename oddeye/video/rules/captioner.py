"""Optional VLM perception: caption frames with a local image-to-text model through transformers (BLIP, LLaVA, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from oddeye.core.errors import InputError, MissingWeightsError, first_line

DEFAULT_PROMPT = "Describe the people and objects in this surveillance frame: what they are, where, how they move."


class Captioner(Protocol):
    """What the rules head needs of a VLM: caption([(H, W[, 3]) uint8, ...]) -> one sentence each."""

    def caption(self, frames: Sequence[np.ndarray]) -> list[str]:
        """One caption per frame."""
        ...


class VLMCaptioner:
    """Frames (H, W[, 3]) uint8 -> one sentence each, from a local vision-language model (nothing is downloaded)."""

    def __init__(self, model: str | Path, device: str = "cpu", prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 40) -> None:
        """model: a local folder or a hub id already in the cache; loaded with local_files_only=True."""
        import transformers

        self.name = str(model)
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.device = device
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(self.name, local_files_only=True)
            cls = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
            self.model = cls.from_pretrained(self.name, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise MissingWeightsError(
                f"cannot load a vision-language model from {self.name!r} offline ({first_line(e)})",
                "download it once (e.g. huggingface-cli download Salesforce/blip-image-captioning-base --local-dir "
                "DIR) and pass DIR as --captioner") from None

    def caption(self, frames: Sequence[np.ndarray]) -> list[str]:
        """One caption per frame; grey frames are expanded to RGB."""
        import torch
        from PIL import Image

        out = []
        for f in frames:
            arr = np.asarray(f)
            if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
                raise InputError(f"a frame must be uint8 (H, W) or (H, W, 3), got {arr.dtype} {arr.shape}")
            img = Image.fromarray(arr).convert("RGB")
            inputs: Any = self.processor(images=img, text=self.prompt, return_tensors="pt").to(self.device)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            text = self.processor.batch_decode(ids, skip_special_tokens=True)[0]
            out.append(text.replace(self.prompt, "").strip())
        return out
