"""The static-KV-cache GPT variant (gsv_core.models.s1_static) against the plain model on the v1/v2 fixture GPTs.

Both modes: ``sliced`` (the CPU default: attends to the filled cache only, so its logits equal the plain path's
bit for bit) and ``fixed`` (fixed shapes per bucket, positions read from tensors, finished rows kept in the batch:
the step CUDA graphs capture, run eagerly here). Greedy tokens equal, logits within float tolerance, single and
batched (ragged text lengths, rows finishing at different steps), reference-free, across a bucket boundary, in
low precision. The CUDA-graph machinery (capture, the load-time check, the fallback) runs here with stand-in graphs,
since capture itself needs a GPU; the engine runs the variant and logs once that graphs are unavailable on the CPU.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from gsv_core.loading import load_gpt
from gsv_core.models import s1_static
from gsv_core.models.s1 import EagerDecodeSession, fixed_length_hook
from gsv_core.models.s1_static import BUCKET, StaticCacheText2Semantic, bucket_capacity
from gsv_core.models.sampling import SamplingParams

VERSIONS = ("v1", "v2")
GREEDY = SamplingParams(top_k=1)
LOGITS_ATOL = {"sliced": 0.0, "fixed": 1e-5, "onnx": 1e-5}
MODES = ["sliced", "fixed", "onnx"]


def _variant(model, mode: str) -> StaticCacheText2Semantic:
    """The static-cache variant in a mode; "onnx" = the sliced interface with the step on onnxruntime."""
    if mode == "onnx":
        from gsv_core.models.s1_onnx import onnx_available

        if not onnx_available():
            pytest.skip("onnx / onnxruntime not installed")
        return StaticCacheText2Semantic.from_plain(model, backend="onnx")
    return StaticCacheText2Semantic.from_plain(model, mode=mode)


@pytest.fixture(scope="module", params=VERSIONS)
def case(request, parity_dir):
    io = np.load(parity_dir / f"s1_{request.param}_io.npz")
    model, _ = load_gpt(parity_dir / f"s1_{request.param}.ckpt")
    return {
        "model": model,
        "phones": torch.from_numpy(io["in_phones"]), "bert": torch.from_numpy(io["in_bert"]),
        "prompt": torch.from_numpy(io["in_prompt"]),
        "phones_b": torch.from_numpy(io["in_phones_b"]), "bert_b": torch.from_numpy(io["in_bert_b"]),
        "y": torch.from_numpy(io["out_naive_y"]), "idx": int(io["out_naive_idx"]),
    }


def _traced(model, fn):
    trace: list = []
    with torch.inference_mode():
        out = fn(model, trace)
    return out, trace


def _compare_traces(a, b, atol):
    assert len(a) == len(b)
    for (rows_a, la), (rows_b, lb) in zip(a, b):
        assert rows_a == rows_b and la.shape == lb.shape
        assert (la.float() - lb.float()).abs().max() <= atol


@pytest.mark.parametrize("mode", MODES)
def test_single_greedy_tokens_and_logits_equal_plain(case, mode):
    static = _variant(case["model"], mode)

    def run(m, trace):
        return m.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40, trace=trace)

    (y_plain, idx_plain), t_plain = _traced(case["model"], run)
    (y_static, idx_static), t_static = _traced(static, run)
    assert torch.equal(y_plain, y_static) and idx_plain == idx_static
    assert torch.equal(y_static[0], case["y"][0] if case["y"].dim() == 2 else case["y"])  # upstream's tokens too
    _compare_traces(t_plain, t_static, LOGITS_ATOL[mode])


@pytest.mark.parametrize("mode", MODES)
def test_batched_ragged_rows_finishing_apart_equal_plain(case, mode):
    """Two items of different text lengths (left padding, key mask) and a hook that ends row 0 early: the other
    row continues alone (the plain path drops row 0 from the cache; the fixed step keeps it and ignores it)."""
    static = _variant(case["model"], mode)
    phones = [case["phones"], case["phones_b"], case["phones"][:20]]
    berts = [case["bert"], case["bert_b"], case["bert"][:, :20]]
    hook = fixed_length_hook([14, 30, 22], case["model"].config.eos)

    def run(m, trace):
        return m.infer_batch(phones, berts, case["prompt"], GREEDY, early_stop_num=60, trace=trace, logits_hook=hook)

    (ys_plain, idx_plain), t_plain = _traced(case["model"], run)
    (ys_static, idx_static), t_static = _traced(static, run)
    assert [y.tolist() for y in ys_plain] == [y.tolist() for y in ys_static] and idx_plain == idx_static
    assert [len(y) - len(case["prompt"]) for y in ys_static] == [14, 30, 22]
    _compare_traces(t_plain, t_static, LOGITS_ATOL[mode])


@pytest.mark.parametrize("mode", MODES)
def test_sampling_with_row_generators_equals_plain(case, mode):
    """top-k sampling with one generator per row, batched: the same draws, the same tokens."""
    static = _variant(case["model"], mode)
    params = SamplingParams(top_k=15, top_p=0.9, temperature=0.8)

    def run(m):
        gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
        with torch.inference_mode():
            return m.generate([case["phones"], case["phones_b"]], [case["bert"], case["bert_b"]], case["prompt"],
                              params, early_stop_num=50, generator=gens)

    a, b = run(case["model"]), run(static)
    if mode == "sliced":  # bit-identical logits: identical samples
        assert [t.tolist() for t in a] == [t.tolist() for t in b]
    else:  # 1e-7 differences may move a sample only where two candidates tie within that; compare the start
        assert all(x[:10].tolist() == y[:10].tolist() for x, y in zip(a, b))


@pytest.mark.parametrize("mode", MODES)
def test_reference_free_and_bucket_growth(case, mode):
    """No prompt, and more steps than one bucket holds: the cache grows (sliced) or moves to the next bucket
    (fixed) mid-sentence without changing a token."""
    static = _variant(case["model"], mode)
    steps = BUCKET + 40
    hook = fixed_length_hook([steps], case["model"].config.eos)

    def run(m, trace):
        return m.generate([case["phones"]], [case["bert"]], None, GREEDY, early_stop_num=-1, max_steps=steps + 5,
                          logits_hook=hook)

    (a,), t_a = _traced(case["model"], lambda m, tr: run(m, tr))
    (b,), t_b = _traced(static, lambda m, tr: run(m, tr))
    assert a.numel() == steps and torch.equal(a, b)
    assert bucket_capacity(1) == BUCKET and bucket_capacity(BUCKET + 1) == 2 * BUCKET


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_static_equals_plain(parity_dir, dtype):
    io = np.load(parity_dir / "s1_v2_io.npz")
    model, _ = load_gpt(parity_dir / "s1_v2.ckpt", dtype=dtype)
    phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
    outs = []
    for m in (model, StaticCacheText2Semantic.from_plain(model, mode="sliced"),
              StaticCacheText2Semantic.from_plain(model, mode="fixed"),
              StaticCacheText2Semantic.from_plain(model, backend="onnx")):  # (fp32 only: falls back to torch)
        with torch.inference_mode():
            # (a generator: in half precision two logits may tie, and top_k=1 keeps both; the draw decides)
            outs.append(m.generate([phones], [bert.to(dtype)], prompt, GREEDY, early_stop_num=25,
                                   generator=torch.Generator().manual_seed(0))[0])
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[3])
    assert outs[2][:10].tolist() == outs[0][:10].tolist()  # fixed: another reduction order in half precision


@pytest.mark.parametrize("mode", ["plain"] + MODES)
def test_token_hook_sees_every_token_as_it_is_drawn(case, mode):
    """The streaming hook: per step the newest token of every live row, matching what generate returns."""
    model = case["model"] if mode == "plain" else _variant(case["model"], mode)
    seen: dict[int, list[int]] = {}

    def hook(step, rows, tokens):
        assert tokens.shape == (len(rows),)
        for row, token in zip(rows, tokens.tolist()):
            seen.setdefault(row, []).append(token)

    stop = fixed_length_hook([12, 20], model.config.eos)
    with torch.inference_mode():
        out = model.generate([case["phones"], case["phones_b"]], [case["bert"], case["bert_b"]], case["prompt"],
                             GREEDY, early_stop_num=40, logits_hook=stop, token_hook=hook)
        alone = model.generate([case["phones_b"]], [case["bert_b"]], case["prompt"], GREEDY, early_stop_num=40,
                               parallel=False, token_hook=lambda s, rows, t: seen.setdefault(9, []).append(int(t)))
    eos = model.config.eos
    assert [seen[0], seen[1]] == [out[0].tolist() + [eos], out[1].tolist() + [eos]]
    assert seen[9][: alone[0].numel()] == alone[0].tolist()


def test_variant_shares_weights_and_keeps_interface(case):
    static = StaticCacheText2Semantic.from_plain(case["model"])
    assert static.mode == "sliced" and not static.graphs  # CPU: no graphs
    assert static.bert_proj.weight is case["model"].bert_proj.weight
    assert static.state_dict().keys() == case["model"].state_dict().keys()
    assert not isinstance(case["model"].decode_session(1, 4, 0, 8, None, torch.device("cpu"), torch.float32),
                          s1_static.StaticDecodeSession)
    assert isinstance(case["model"].decode_session(1, 4, 0, 8, None, torch.device("cpu"), torch.float32),
                      EagerDecodeSession)


# -- the CUDA-graph machinery, with stand-in graphs ------------------------------------------------------------------
class _FakeGraph:
    """Stands in for a captured CUDA graph: replay() runs the eager fixed step (optionally corrupted)."""

    def __init__(self, model, bufs, capacity, corrupt=False):
        self.model, self.bufs, self.capacity, self.corrupt, self.replays = model, bufs, capacity, corrupt, 0

    def replay(self):
        self.replays += 1
        self.model.fixed_step(self.bufs, self.capacity)
        if self.corrupt:
            self.bufs.logits[:, 0] += 1e4  # a wrong graph: greedy picks token 0


def _graphed(model, corrupt=False, fail=False):
    static = StaticCacheText2Semantic.from_plain(model, mode="fixed")
    static.graphs = True  # as on CUDA
    graphs = []

    def capture(bufs, capacity):
        if fail:
            raise RuntimeError("capture not supported here")
        graphs.append(_FakeGraph(static, bufs, capacity, corrupt))
        return graphs[-1]

    static._capture = capture
    return static, graphs


def test_graph_replay_gives_the_eager_tokens_and_captures_once_per_bucket(case):
    static, graphs = _graphed(case["model"])
    assert static.verify_graphs() and static.graphs
    with torch.inference_mode():
        y, idx = static.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40)
        y2, _ = static.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40)
    assert torch.equal(y[0], case["y"][0] if case["y"].dim() == 2 else case["y"]) and torch.equal(y, y2)
    # one graph per (buffer set, bucket), reused by the next sentence
    assert len({(id(g.bufs), g.capacity) for g in graphs}) == len(graphs)
    assert sum(g.replays for g in graphs) > 40


def test_graph_mismatch_falls_back_to_eager_with_one_log_line(case, caplog):
    static, _ = _graphed(case["model"], corrupt=True)
    with caplog.at_level(logging.WARNING, logger="gsv.s1.static"):
        assert not static.verify_graphs()
    assert not static.graphs and "differ" in static.graph_note
    assert len([r for r in caplog.records if "CUDA graphs off" in r.message]) == 1
    with torch.inference_mode():
        y, _ = static.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40)
    assert torch.equal(y[0], case["y"][0] if case["y"].dim() == 2 else case["y"])


def test_capture_failure_falls_back_to_eager(case, caplog):
    static, _ = _graphed(case["model"], fail=True)
    with caplog.at_level(logging.WARNING, logger="gsv.s1.static"):
        with torch.inference_mode():
            y, _ = static.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40)
            static.infer_naive(case["phones"], case["bert"], case["prompt"], GREEDY, early_stop_num=40)
    assert not static.graphs and "capturing" in static.graph_note
    assert len([r for r in caplog.records if "CUDA graphs off" in r.message]) == 1
    assert torch.equal(y[0], case["y"][0] if case["y"].dim() == 2 else case["y"])


# -- through the registry and the engine -----------------------------------------------------------------------------
def test_engine_uses_the_static_variant_and_logs_once(parity_dir, tiny_assets, tmp_path, caplog):
    from config import load_settings
    from gsv_core.api import Engine

    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    with caplog.at_level(logging.INFO, logger="gsv.fastpaths"):
        engine = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                             hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
        req = dict(text="今天天气很好。我们去公园散步吧！", ref_audio=str(tiny_assets["ref"]), ref_text="你早上好，这是参考声音。",
                   gpt_path=str(parity_dir / "s1_v2.ckpt"), sovits_path=str(parity_dir / "s2_v2.pth.xz"), seed=3,
                   split_method="cut5", max_tokens=15)
        a = engine.synthesize(req)
        b = engine.synthesize({**req, "parallel": False})
        list(engine.stream(req))
    lines = [r for r in caplog.records if "CUDA graphs are not available" in r.message]
    assert len(lines) == 1
    assert a.audio.size and np.isfinite(a.audio).all() and [f.tokens for f in a.fragments] == \
        [f.tokens for f in b.fragments]
    from gsv_core.engine.registry import ModelRegistry  # noqa: F401 - the registry is what keys the variant

    gpt = engine._pipeline.registry.gpt(parity_dir / "s1_v2.ckpt")[0]
    assert isinstance(gpt, StaticCacheText2Semantic)
