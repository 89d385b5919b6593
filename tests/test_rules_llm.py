"""LLM plumbing: a tiny random causal LM through transformers and through a real local OpenAI-style HTTP server."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import BackendError, MissingWeightsError
from oddeye.core.head import RunContext
from oddeye.video.rules.llm import HTTPBackend, TransformersBackend, extract_json
from oddeye.video.rules.rules import ATTRIBUTES, Rule

CORPUS = ["objects move slowly left along the lower walkway", "a tall object stands still", '{"anomalous": true}',
          '[{"attribute": "speed", "zone": "anywhere", "high": 3.5, "text": "people walk"}]', "rule R001 R002 null"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer GPT-2 with a byte-level BPE tokenizer trained here (nothing downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=fast.vocab_size, n_positions=1024, n_embd=32, n_layer=1, n_head=2,
                     eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id)
    d = tmp_path_factory.mktemp("tiny_lm")
    GPT2LMHeadModel(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def backend(tiny_lm: Path) -> TransformersBackend:
    return TransformersBackend(tiny_lm, retries=1, max_new_tokens=12)


def _rules() -> list[Rule]:
    return [Rule("R001", "speed", high=2.0, margin=0.5, text="objects move at most 2 px/frame"),
            Rule("R002", "area", high=900.0, margin=200.0, text="objects cover at most 900 px^2")]


class _Server:
    """A real HTTP server in a thread serving the tiny model's generations in the OpenAI chat format."""

    def __init__(self, lm: TransformersBackend) -> None:
        self.lm, self.requests, self.served = lm, [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if not self.path.endswith("/v1/chat/completions"):
                    self.send_error(404)
                    return
                if self.path.startswith("/constrained"):
                    text = outer.constrained(body["messages"])
                else:
                    text = outer.lm.complete(body["messages"])
                outer.served.append(text)
                data = json.dumps({"object": "chat.completion", "model": body["model"],
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def constrained(self, messages: list[dict]) -> str:
        """Constrained decoding: the model's next tokens choose the values of a valid JSON answer."""
        import torch

        prompt = self.lm.prompt_text(messages)
        ids = self.lm.tokenizer(prompt, return_tensors="pt").input_ids[:, -900:]
        with torch.no_grad():
            out = self.lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                                         pad_token_id=self.lm.tokenizer.eos_token_id)
        toks = [int(t) for t in out[0, ids.shape[1]:]] + [0, 0, 0, 0]
        words = self.lm.tokenizer.decode(toks[:4], skip_special_tokens=True).strip() or "model output"
        user = messages[-1]["content"]
        if "Frame:" in user:  # deduction: pick true/false and one of the rule ids in the prompt
            ids_in_prompt = re.findall(r"^(R\d+):", user, flags=re.M)
            return json.dumps({"anomalous": toks[0] % 2 == 1, "rule": ids_in_prompt[toks[1] % len(ids_in_prompt)],
                               "reason": words})
        numeric = [a for a in ATTRIBUTES if a not in ("zone", "kind")]
        return json.dumps([{"attribute": numeric[toks[0] % len(numeric)], "zone": "anywhere",
                            "high": float(toks[1] % 50 + 1), "text": words}])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(backend: TransformersBackend):
    s = _Server(backend)
    yield s
    s.close()


def test_transformers_backend_generates_then_reports_malformed(backend: TransformersBackend) -> None:
    text = backend.complete([{"role": "user", "content": "describe the walkway"}])
    assert isinstance(text, str)
    calls = []
    real = backend.complete
    backend.complete = lambda m: calls.append(m) or real(m)  # type: ignore[method-assign]
    try:
        with pytest.raises(BackendError, match="malformed output 2 times"):
            backend.deduce("a tall object moves quickly left", _rules())
    finally:
        backend.complete = real  # type: ignore[method-assign]
    assert len(calls) == 2 and "not valid" in calls[1][-1]["content"]  # the retry told the model what was wrong


def test_http_backend_plumbing_and_retry(server: _Server) -> None:
    http = HTTPBackend(f"http://127.0.0.1:{server.port}/v1", model="tiny", retries=2, max_new_tokens=12)
    n0 = len(server.requests)
    with pytest.raises(BackendError, match="malformed output 3 times"):
        http.deduce("a tall object moves quickly left", _rules())
    reqs = server.requests[n0:]
    assert len(reqs) == 3 and all(p == "/v1/chat/completions" for p, _ in reqs)
    assert reqs[0][1]["model"] == "tiny" and reqs[0][1]["messages"][0]["role"] == "system"
    assert "Frame: a tall object moves quickly left" in reqs[0][1]["messages"][-1]["content"]


def test_http_backend_constrained_generation_parses(server: _Server) -> None:
    http = HTTPBackend(f"http://127.0.0.1:{server.port}/constrained", model="tiny")
    j = http.deduce("a wide object moves very fast right", _rules())
    served = json.loads(server.served[-1])
    assert j.anomalous == served["anomalous"]
    if j.anomalous:
        assert j.rule is not None and j.rule.id == served["rule"]
    rules = http.induce(["a tall object moves slowly left"] * 4, ["lower walkway"], subsets=2)
    last = json.loads(server.served[-1])  # the aggregation answer
    assert [r.attribute for r in rules] == [d["attribute"] for d in last]
    assert rules[0].high == last[0]["high"] and rules[0].source == "llm"


def test_endpoint_down_is_backend_error_naming_url() -> None:
    http = HTTPBackend("http://127.0.0.1:9/v1", model="x", timeout=2)
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9/v1/chat/completions is not reachable"):
        http.complete([{"role": "user", "content": "hi"}])


def test_head_keeps_offline_rules_and_scores_when_llm_is_down(tmp_path: Path) -> None:
    from oddeye.core.synth import make_video
    from oddeye.video.rules import RulesHead

    dead = {"backend": "http", "url": "http://127.0.0.1:9", "model": "x"}
    normal = make_video(seed=3, n_frames=120, anomaly=None).frames
    with pytest.warns(UserWarning, match="LLM induction failed"):
        head = RulesHead(llm=dead).fit([normal], ctx=RunContext(progress=False))
    assert len(head.rules) > 0 and "not reachable" in head.rules.meta["llm_error"]
    v = make_video(seed=3, anomaly="fast")
    with pytest.warns(UserWarning, match="offline scores are kept"):
        sc, verdicts = head.score_video(v.frames)
    assert len(sc.frame_scores) == 120 and "llm_error" in sc.meta
    assert sc.frame_scores[v.labels == 1].mean() > sc.frame_scores[v.labels == 0].mean()
    # loaded, the model asks the endpoint its config names (still down): same warning, same scores
    again = RulesHead.load(head.save(tmp_path / "m"))
    with pytest.warns(UserWarning, match=r"127\.0\.0\.1:9/v1/chat/completions is not reachable"):
        sc2, _ = again.score_video(v.frames)
    np.testing.assert_array_equal(sc2.frame_scores, sc.frame_scores)


def test_lenient_json_and_free_text_rules() -> None:
    assert extract_json('Sure!\n```json\n[{"attribute": "speed", "high": 3,}]\n```') == [{"attribute": "speed", "high": 3}]
    with pytest.raises(ValueError):
        extract_json("no json here")
    http = HTTPBackend("http://127.0.0.1:9", model="x")
    rules = http.parse_rules([{"text": "people walk at most 3.5 px per frame"},
                              {"attribute": "zone", "allowed": ["lower walkway"], "text": "stay on the path"},
                              "a sentence with no limit"], ["lower walkway", "upper grass"])
    assert rules[0].attribute == "speed" and rules[0].high == 3.5  # matched by meaning (MiniLM)
    assert rules[1].allowed == ["lower walkway"] and len(rules) == 2


def test_missing_models_are_clear_errors(tmp_path: Path) -> None:
    from oddeye.video.rules.captioner import VLMCaptioner

    with pytest.raises(MissingWeightsError, match="offline"):
        TransformersBackend(tmp_path / "no-such-model")
    with pytest.raises(MissingWeightsError, match="--captioner"):
        VLMCaptioner(tmp_path / "no-such-vlm")


class _BrightnessCaptioner:
    """A stand-in VLM for the plumbing test: describes a frame by its measured brightness."""

    def caption(self, frames):
        return [f"a scene of mean brightness {float(f.mean()):.0f}" for f in frames]


def test_head_with_llm_and_captioner_end_to_end(server: _Server, tmp_path: Path) -> None:
    from oddeye.core.synth import make_video
    from oddeye.video.rules import RulesHead

    llm = {"backend": "http", "url": f"http://127.0.0.1:{server.port}/constrained", "model": "tiny",
           "deduce_frames": 2, "captioner": "brightness stand-in"}
    normal = make_video(seed=4, n_frames=120, anomaly=None).frames
    n0 = len(server.requests)
    head = RulesHead(llm=llm, captioner=_BrightnessCaptioner()).fit([normal], ctx=RunContext(progress=False))
    prompts_sent = [b["messages"][-1]["content"] for _, b in server.requests[n0:]]
    assert any("mean brightness" in p and "measured:" in p for p in prompts_sent)
    assert head.rules.meta["llm_rules"] >= 1 and any(r.source == "llm" for r in head.rules.rules)
    test = make_video(seed=4, anomaly="fast").frames
    sc, _ = head.score_video(test)
    judged = sc.meta.get("llm_judgements", [])
    assert 1 <= len(judged) <= 2 and all(isinstance(j["anomalous"], bool) for j in judged)
    # a loaded model rebuilds its LLM and captioner from the config: this stand-in has no folder to load
    head.save(tmp_path / "m")
    again = RulesHead.load(tmp_path / "m", device="cpu")
    assert again.config.llm == head.config.llm
    with pytest.raises(MissingWeightsError, match="brightness stand-in"):
        again.score_video(test)
