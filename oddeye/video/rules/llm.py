"""LLM backends for induction, aggregation and deduction: a local transformers causal LM or an OpenAI-compatible
HTTP endpoint. Answers are parsed leniently into Rule objects / Judgements; malformed answers are retried, then
reported as BackendError."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from oddeye.core.errors import BackendError, InputError, MissingWeightsError, first_line
from oddeye.video.rules import prompts
from oddeye.video.rules.config import LLMConfig
from oddeye.video.rules.rules import ATTRIBUTES, KINDS, Rule, RuleSet, default_text

ENV_BASE_URL = "ODDEYE_LLM_BASE_URL"
ENV_MODEL = "ODDEYE_LLM_MODEL"
ENV_API_KEY = "ODDEYE_LLM_API_KEY"
_NUM = r"-?\d+(?:\.\d+)?"


@dataclass
class Judgement:
    """An LLM's verdict on one frame: anomalous or not, the broken rule (if it names one) and why."""

    anomalous: bool
    rule: Rule | None
    reason: str


def extract_json(text: str) -> Any:
    """The first JSON object or list in `text` (code fences, prose and trailing commas tolerated); ValueError if none."""
    t = re.sub(r"```(?:json)?", "", text)
    for start in (m.start() for m in re.finditer(r"[\[{]", t)):
        depth, in_str, esc = 0, False, False
        for k in range(start, len(t)):
            c = t[k]
            if in_str:
                esc = (c == "\\") and not esc
                if c == '"' and not esc:
                    in_str = False
                continue
            if c == '"':
                in_str = True
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    chunk = re.sub(r",\s*([\]}])", r"\1", t[start:k + 1])
                    try:
                        return json.loads(chunk)
                    except json.JSONDecodeError:
                        break
    raise ValueError("no JSON object or list in the answer")


class LLMBackend:
    """Shared logic: prompts, lenient JSON parsing with retries, mapping answers to rules. Subclasses complete()."""

    where = "LLM"

    def __init__(self, retries: int = 2, max_new_tokens: int = 512, matcher: Any = None) -> None:
        """retries: extra attempts after a malformed answer; matcher: a TextMatcher (default: MiniLM, lazily)."""
        self.retries = int(retries)
        self.max_new_tokens = int(max_new_tokens)
        self._matcher = matcher

    def complete(self, messages: list[dict]) -> str:
        """One chat completion -> the assistant's text (overridden)."""
        raise BackendError(f"{type(self).__name__} cannot complete chats")

    @property
    def matcher(self) -> Any:
        """The sentence encoder used to match free text to attributes, zones and rules."""
        if self._matcher is None:
            from oddeye.video.rules.textmatch import TextMatcher

            self._matcher = TextMatcher()
        return self._matcher

    def ask(self, messages: list[dict], parse: Callable[[Any], Any]) -> Any:
        """Ask until parse(extract_json(answer)) succeeds; after 1 + retries failures raise BackendError."""
        last = ""
        msgs = list(messages)
        for _ in range(1 + self.retries):
            last = self.complete(msgs)
            try:
                return parse(extract_json(last))
            except (ValueError, TypeError, KeyError) as e:
                msgs = list(messages) + [{"role": "assistant", "content": last[:2000]},
                                         {"role": "user", "content": f"That was not valid ({e}). Answer with the "
                                                                     "JSON only, exactly in the format asked."}]
        snippet = " ".join(last.split())[:160]
        raise BackendError(f"{self.where} answered malformed output {1 + self.retries} times (last: {snippet!r})",
                           "use a stronger instruction-tuned model, or the offline backend")

    # -- the three AnomalyRuler steps --------------------------------------------------------------
    def induce(self, descriptions: Sequence[str], zones: Sequence[str], hints: RuleSet | None = None,
               subsets: int = 3, seed: int = 0) -> list[Rule]:
        """Induction on `subsets` random halves of the descriptions, then aggregation -> rules."""
        hint_rules = hints.rules if hints else []
        rng = np.random.default_rng(seed)
        lists = []
        for _ in range(max(1, subsets)):
            k = max(1, len(descriptions) // 2) if subsets > 1 else len(descriptions)
            pick = sorted(rng.choice(len(descriptions), k, replace=False)) if descriptions else []
            msgs = prompts.induction_messages([descriptions[i] for i in pick], zones, hint_rules)
            lists.append(self.ask(msgs, lambda doc: self.parse_rules(doc, zones)))
        if len(lists) == 1:
            return lists[0]
        return self.ask(prompts.aggregation_messages(lists), lambda doc: self.parse_rules(doc, zones))

    def deduce(self, description: str, rules: Sequence[Rule]) -> Judgement:
        """Deduction for one frame description -> Judgement with the broken rule (matched by id or meaning)."""
        def parse(doc: Any) -> Judgement:
            if not isinstance(doc, dict) or "anomalous" not in doc:
                raise ValueError('expected an object with "anomalous"')
            flag = doc["anomalous"]
            if isinstance(flag, str):
                flag = flag.strip().lower() in ("true", "yes", "1")
            rule = self.match_rule(str(doc.get("rule") or ""), str(doc.get("reason") or ""), rules) if flag else None
            return Judgement(bool(flag), rule, str(doc.get("reason") or ""))

        return self.ask(prompts.deduction_messages(description, rules), parse)

    # -- mapping text to structure -------------------------------------------------------------------
    def match_rule(self, rule_ref: str, reason: str, rules: Sequence[Rule]) -> Rule | None:
        """The rule an answer names: by id if it gives one, else the rule closest in meaning to its words."""
        by_id = {r.id.lower(): r for r in rules}
        for token in re.findall(r"[A-Za-z]*\d+", rule_ref):
            if token.lower() in by_id:
                return by_id[token.lower()]
        text = (rule_ref + " " + reason).strip()
        if not text or not rules:
            return None
        i, _ = self.matcher.best(text, [r.describe() for r in rules])
        return rules[i]

    def parse_rules(self, doc: Any, zones: Sequence[str]) -> list[Rule]:
        """Rules from a parsed answer (a list, or {"rules": [...]}); items without a checkable limit are skipped."""
        if isinstance(doc, dict):
            doc = doc.get("rules", [doc])
        if not isinstance(doc, list):
            raise ValueError("expected a list of rules")
        out: list[Rule] = []
        for item in doc:
            r = self._to_rule(item, zones)
            if r is not None:
                r.id = f"L{len(out) + 1:03d}"
                out.append(r)
        if not out:
            raise ValueError("no rule with an attribute and a limit")
        return out

    def _to_rule(self, item: Any, zones: Sequence[str]) -> Rule | None:
        """One answer item -> Rule (attribute and zone matched by meaning when not given exactly)."""
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            return None
        text = str(item.get("text") or item.get("rule") or "")
        attr = str(item.get("attribute") or "").strip().lower()
        if attr not in ATTRIBUTES:
            if not text:
                return None
            attr, _ = self.matcher.attribute_of(text)
        zone = str(item.get("zone") or "anywhere")
        if zone != "anywhere" and zone not in zones and zones:
            zone = list(zones)[self.matcher.best(zone, list(zones))[0]]
        if attr == "kind":
            allowed = [str(k).lower() for k in item.get("allowed") or [] if str(k).lower() in KINDS]
            if not allowed:
                return None
            return Rule(id="", attribute="kind", zone=zone, allowed=sorted(set(allowed)), weight=0.3, text=text,
                        source="llm")
        if attr == "zone":
            allowed = item.get("allowed")
            if not isinstance(allowed, list) or not allowed:
                return None
            names = [z if z in zones else list(zones)[self.matcher.best(str(z), list(zones))[0]] for z in allowed]
            r = Rule(id="", attribute="zone", allowed=sorted(set(names)), weight=0.1, text=text, source="llm")
            return r
        low, high = _num(item.get("low")), _num(item.get("high"))
        if low is None and high is None and text:
            nums = [float(x) for x in re.findall(_NUM, text)]
            if nums:
                high = max(nums)
        if low is None and high is None:
            return None
        if low is not None and high is not None and low > high:
            low, high = high, low
        r = Rule(id="", attribute=attr, zone="anywhere" if attr == "count" else zone, low=low, high=high,
                 margin=max(0.25 * abs(high if high is not None else low or 1.0), 1e-3), text=text, source="llm",
                 weight=1.0 if attr in ("speed", "track_speed") else 0.3)
        r.text = r.text or default_text(r)
        return r

    def merge(self, offline: RuleSet, extra: Sequence[Rule]) -> RuleSet:
        """Offline rules plus the LLM's; an LLM rule on the same attribute and zone replaces the offline one."""
        keys = {(r.attribute, r.zone) for r in extra}
        kept = [r for r in offline.rules if (r.attribute, r.zone) not in keys]
        rules = kept + list(extra)
        for i, r in enumerate(rules):
            r.id = f"{'L' if r.source == 'llm' else 'R'}{i + 1:03d}"
        meta = dict(offline.meta)
        meta["backend"] = self.where
        meta["llm_rules"] = len(extra)
        return RuleSet(rules=rules, meta=meta)


def _num(v: Any) -> float | None:
    """A number from a JSON value (number or numeric string), else None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    m = re.search(_NUM, str(v))
    return float(m.group()) if m else None


class HTTPBackend(LLMBackend):
    """Any OpenAI-compatible /v1/chat/completions endpoint (vLLM, Ollama, llama.cpp server, ...)."""

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, **kw: Any) -> None:
        """base_url / model default to $ODDEYE_LLM_BASE_URL / $ODDEYE_LLM_MODEL."""
        super().__init__(**kw)
        base = base_url or os.environ.get(ENV_BASE_URL)
        if not base:
            raise InputError("no LLM endpoint given", f"pass --llm-url http://host:port/v1 or set {ENV_BASE_URL}")
        base = base.rstrip("/")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model = model or os.environ.get(ENV_MODEL) or "default"
        self.api_key = api_key or os.environ.get(ENV_API_KEY)
        self.timeout = float(timeout)
        self.where = f"LLM endpoint {self.url}"

    def complete(self, messages: list[dict]) -> str:
        """POST the chat; a down endpoint or a non-OpenAI answer is a BackendError naming the URL."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as e:
            raise BackendError(f"{self.where} answered HTTP {e.code} ({e.reason})",
                               "check the model name and the server log") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise BackendError(f"{self.where} is not reachable ({reason})",
                               f"start the server, or point {ENV_BASE_URL} / --llm-url at a running one") from None
        except json.JSONDecodeError:
            raise BackendError(f"{self.where} did not answer JSON", "is it an OpenAI-compatible server?") from None
        try:
            return str(doc["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.where} answered without choices[0].message.content",
                               "is it an OpenAI-compatible /v1/chat/completions server?") from None


class TransformersBackend(LLMBackend):
    """A local causal LM through transformers (a folder, or a hub id already in the local cache)."""

    def __init__(self, model: str | Path, device: str = "cpu", **kw: Any) -> None:
        """model: folder or hub id; loaded with local_files_only=True (nothing is downloaded)."""
        super().__init__(**kw)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.where = f"local model {model}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(model), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise MissingWeightsError(f"cannot load a causal LM from {model!r} offline ({first_line(e)})",
                                      "download it once (huggingface-cli download MODEL --local-dir DIR) and pass "
                                      "DIR, or use --backend http with a running server") from None
        self.device = device

    def prompt_text(self, messages: list[dict]) -> str:
        """The chat as one prompt: the tokenizer's chat template when it has one, else role-tagged lines."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def complete(self, messages: list[dict]) -> str:
        """Greedy generation of up to max_new_tokens tokens after the prompt."""
        import torch

        ids = self.tokenizer(self.prompt_text(messages), return_tensors="pt").input_ids.to(self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(self.model.config, "n_positions", 0)
        if limit:
            ids = ids[:, -max(1, limit - self.max_new_tokens):]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                      do_sample=False, pad_token_id=pad)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def make_backend(cfg: LLMConfig, device: str = "cpu") -> LLMBackend | None:
    """The backend `cfg` names: None when offline, else a TransformersBackend or an HTTPBackend."""
    kw: dict[str, Any] = {"retries": cfg.retries, "max_new_tokens": cfg.max_new_tokens}
    if cfg.backend == "transformers":
        return TransformersBackend(str(cfg.model), device=device, **kw)
    if cfg.backend == "http":
        return HTTPBackend(cfg.url, cfg.model, **kw)
    return None
