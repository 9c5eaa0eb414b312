"""s1 GPT parity against upstream's golden outputs (fixture README §1).

Cases are discovered from the fixture folder: every ``s1_<name>_io.npz`` with its ``s1_<name>_meta.json`` and the
checkpoint the meta names. Batched items are discovered from the ``in_phones*`` / ``in_bert*`` keys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from gsv_core.checkpoints import load_gpt_checkpoint
from gsv_core.errors import ModelMismatchError
from gsv_core.models.s1 import BERT_DIM, EOS_BLOCKED_STEPS, MAX_DECODE_STEPS, S1Config, Text2Semantic
from gsv_core.models.sampling import SamplingParams

ATOL = RTOL = 1e-4  # README: logits and prefill tensors; tokens and idx exact


@dataclass
class S1Case:
    name: str
    model: Text2Semantic
    io: dict
    meta: dict

    def t(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.io[key])

    @property
    def sampling(self) -> tuple[SamplingParams, int]:
        s = self.meta["sampling"]
        params = SamplingParams(top_k=s["top_k"], top_p=s["top_p"], temperature=s["temperature"],
                                repetition_penalty=s["repetition_penalty"])
        return params, s["early_stop_num"]

    def batch_items(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        suffixes = [""] + sorted(k[len("in_phones"):] for k in self.io if k.startswith("in_phones_"))
        return [self.t("in_phones" + s) for s in suffixes], [self.t("in_bert" + s) for s in suffixes]


def _discover(parity_dir: Path) -> list[S1Case]:
    cases = []
    for io_path in sorted(parity_dir.glob("s1_*_io.npz")):
        name = io_path.name[: -len("_io.npz")]
        meta = json.loads((parity_dir / f"{name}_meta.json").read_text(encoding="utf-8"))
        ckpt = load_gpt_checkpoint(parity_dir / meta.get("checkpoint", f"{name}.ckpt"))
        model = Text2Semantic.from_config(ckpt.config["model"], ckpt.config.get("data", {}).get("max_sec"))
        model.load_state_dict(ckpt.model_state_dict(), strict=True)
        model = model.to(torch.float32).eval()
        with np.load(io_path) as npz:
            io = {k: npz[k] for k in npz.files}
        cases.append(S1Case(name, model, io, meta))
    return cases


@pytest.fixture(scope="module")
def s1_cases(parity_dir) -> list[S1Case]:
    cases = _discover(parity_dir)
    assert cases, f"no s1_*_io.npz cases in {parity_dir}"
    return cases


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual.float(), expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def _same_tokens(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.equal(actual.long(), expected.long()), f"{what}: {actual.tolist()} != {expected.tolist()}"


def test_config_matches_meta(s1_cases):
    for case in s1_cases:
        cfg, expected = case.model.config, case.meta["config_model"]
        assert (cfg.vocab_size, cfg.phoneme_vocab_size, cfg.hidden_dim, cfg.num_heads, cfg.num_layers, cfg.eos) == (
            expected["vocab_size"], expected["phoneme_vocab_size"], expected["hidden_dim"], expected["head"],
            expected["n_layer"], expected["EOS"]), case.name
        keys = ["model." + k for k in case.model.state_dict()]
        assert keys == case.meta["state_dict_keys"], case.name


def test_prefill_inputs(s1_cases):
    for case in s1_cases:
        m = case.model
        with torch.no_grad():
            x_pos = m.embed_text(case.t("in_phones")[None], case.t("in_bert")[None])
            y_pos = m.embed_audio(case.t("in_prompt")[None])
        _close(x_pos, case.t("out_prefill_x_pos"), f"{case.name} x_pos")
        _close(y_pos, case.t("out_prefill_y_pos"), f"{case.name} y_pos")
        first = m.prefill_logits(case.t("in_phones")[None], case.t("in_bert")[None], case.t("in_prompt")[None])
        _close(first, case.t("out_naive_first_logits"), f"{case.name} prefill_logits")


def test_naive_greedy(s1_cases):
    for case in s1_cases:
        params, early_stop = case.sampling
        trace: list = []
        y, idx = case.model.infer_naive(case.t("in_phones"), case.t("in_bert"), case.t("in_prompt"), params,
                                        early_stop, trace=trace)
        steps = torch.cat([logits for _, logits in trace])
        _close(steps[:1], case.t("out_naive_first_logits"), f"{case.name} first logits")
        _close(steps, case.t("out_naive_step_logits"), f"{case.name} step logits")
        _same_tokens(y, case.t("out_naive_y"), f"{case.name} naive y")
        assert idx == int(case.io["out_naive_idx"]), f"{case.name} naive idx {idx}"
        _same_tokens(y[0, -idx:], case.t("out_naive_pred_semantic"), f"{case.name} naive pred_semantic")


def test_reference_free(s1_cases):
    for case in s1_cases:
        params, early_stop = case.sampling
        trace: list = []
        y, idx = case.model.infer_naive(case.t("in_phones"), case.t("in_bert"), None, params, early_stop, trace=trace)
        if "out_reffree_step_logits" in case.io:
            _close(torch.cat([l for _, l in trace]), case.t("out_reffree_step_logits"), f"{case.name} ref-free logits")
        _same_tokens(y, case.t("out_reffree_y"), f"{case.name} ref-free y")
        assert idx == int(case.io["out_reffree_idx"]), f"{case.name} ref-free idx {idx}"


def test_batched_left_padded(s1_cases):
    for case in s1_cases:
        params, early_stop = case.sampling
        phones, berts = case.batch_items()
        trace: list = []
        y_list, idx_list = case.model.infer_batch(phones, berts, case.t("in_prompt"), params, early_stop,
                                                  max_len=max(p.shape[0] for p in phones), trace=trace)
        rows, first = trace[0]
        assert rows == list(range(len(phones)))
        _close(first, case.t("out_batch_first_logits"), f"{case.name} batch first logits")
        assert idx_list == case.io["out_batch_idx"].tolist(), f"{case.name} batch idx {idx_list}"
        for i, (y, idx) in enumerate(zip(y_list, idx_list)):
            _same_tokens(y, case.t(f"out_batch_y{i}"), f"{case.name} batch y{i}")
            _same_tokens(y[-idx:], case.t(f"out_batch_pred_semantic{i}"), f"{case.name} batch pred_semantic{i}")


def test_generate_returns_every_generated_token(s1_cases):
    """generate() (the engine's entry) returns the tokens generated before EOS, or all of them when a limit stopped
    the row, on every path; upstream's return conventions drop one token on a limit stop (the first in its naive
    path, the last in its batched path) and stay available through infer_naive / infer_batch."""
    for case in s1_cases:
        params, early_stop = case.sampling
        phones, berts = case.batch_items()
        prompt = case.t("in_prompt")
        n_prompt = prompt.numel()
        sequential = case.model.generate(phones[:1], berts[:1], prompt, params, early_stop, parallel=False)
        _same_tokens(sequential[0], case.t("out_naive_y")[0, n_prompt:], f"{case.name} generate(sequential)")
        parallel = case.model.generate(phones, berts, prompt, params, early_stop)
        for i, tokens in enumerate(parallel):
            upstream = case.t(f"out_batch_y{i}")[n_prompt:]
            assert tokens.numel() - upstream.numel() in (0, 1), f"{case.name} item {i}: {tokens.numel()} tokens"
            _same_tokens(tokens[: upstream.numel()], upstream, f"{case.name} generate(parallel)[{i}]")
        _same_tokens(parallel[0], sequential[0], f"{case.name} parallel vs sequential")
        ref_free = case.model.generate(phones[:1], berts[:1], None, params, early_stop)
        _same_tokens(ref_free[0], case.t("out_reffree_y")[0], f"{case.name} generate(reference-free)")


def test_generator_seed_reproducible(s1_cases):
    case = s1_cases[0]
    phones, berts = case.batch_items()
    params = SamplingParams(top_k=50, temperature=1.5)

    def run(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return [t.tolist() for t in case.model.generate(phones, berts, case.t("in_prompt"), params, 30, gen)]

    assert run(1234) == run(1234)
    assert run(1234) != run(4321)


@pytest.mark.parametrize("dtype, rel_tol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_low_precision(s1_cases, dtype, rel_tol):
    case = s1_cases[0]
    model = Text2Semantic(case.model.config)
    model.load_state_dict(case.model.state_dict())
    model = model.to("cpu", dtype).eval()
    phones, bert, prompt = case.t("in_phones")[None], case.t("in_bert")[None].to(dtype), case.t("in_prompt")[None]
    first = model.prefill_logits(phones, bert, prompt)
    expected = case.t("out_naive_first_logits")
    assert first.dtype == dtype
    assert ((first.float() - expected).norm() / expected.norm()).item() < rel_tol
    params, _ = case.sampling
    y, idx = model.infer_naive(case.t("in_phones"), case.t("in_bert"), case.t("in_prompt"), params, 15)
    prompt_len = case.t("in_prompt").shape[0]
    assert y.dtype == torch.long and idx <= 15
    assert y.shape[1] in (prompt_len + idx, prompt_len + idx + 1)  # EOS stop drops the EOS itself
    assert int(y.min()) >= 0 and int(y.max()) < model.config.eos


def test_user_errors_are_readable(s1_cases):
    case = s1_cases[0]
    state = case.model.state_dict()
    broken = {k: v for k, v in state.items() if k != "ar_predict_layer.weight"}
    with pytest.raises(ModelMismatchError, match="missing"):
        Text2Semantic(case.model.config).load_weights(broken)
    phones = case.t("in_phones").clone()
    phones[0] = case.model.config.phoneme_vocab_size
    with pytest.raises(ModelMismatchError, match="phone id"):
        case.model.generate([phones], [case.t("in_bert")], case.t("in_prompt"))


class _FixedLogits(torch.nn.Module):
    """Stands in for ar_predict_layer: the same logits at every step, for every row."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits.to(hidden.dtype).expand(hidden.shape[0], -1)


def test_stop_rule_uses_penalised_argmax():
    # Token 5 leads EOS on the raw logits but not after the repetition penalty (5 is in the prompt): upstream's
    # argmax check sees its in-place penalised logits, so decoding ends at the first step EOS is allowed, whatever
    # token was sampled. A check on the raw logits would only stop when EOS happens to be sampled (~57% per try).
    config = S1Config(vocab_size=1025, phoneme_vocab_size=16, embedding_dim=8, hidden_dim=8, num_heads=2,
                      num_layers=1)
    model = Text2Semantic(config).eval()
    logits = torch.full((1, config.vocab_size), -20.0)
    logits[0, 5], logits[0, config.eos] = 3.0, 2.5
    model.ar_predict_layer = _FixedLogits(logits)
    phones, bert, prompt = torch.tensor([1, 2, 3]), torch.zeros(BERT_DIM, 3), torch.tensor([5, 5])
    params = SamplingParams(top_k=2, repetition_penalty=1.35)
    for seed in range(10):
        y, idx = model.infer_naive(phones, bert, prompt, params, generator=torch.Generator().manual_seed(seed))
        assert idx == EOS_BLOCKED_STEPS, f"seed {seed}: stopped at {idx}"
        assert y[0].tolist() == [5] * (2 + EOS_BLOCKED_STEPS)  # EOS stop: the last token is dropped
        y_list, idx_list = model.infer_batch([phones, phones[:2]], [bert, bert[:, :2]], prompt, params,
                                             generator=torch.Generator().manual_seed(seed))
        assert idx_list == [EOS_BLOCKED_STEPS] * 2
        assert all(t.tolist() == [5] * (2 + EOS_BLOCKED_STEPS) for t in y_list)


def test_step_cap_conventions():
    # Never EOS: both entry points stop at step MAX_DECODE_STEPS - 1; the naive one keeps every token (so y[-idx:]
    # drops the first), the batched one drops the last.
    config = S1Config(vocab_size=1025, phoneme_vocab_size=16, embedding_dim=8, hidden_dim=8, num_heads=2,
                      num_layers=1)
    model = Text2Semantic(config).eval()
    logits = torch.full((1, config.vocab_size), -20.0)
    logits[0, 7] = 3.0
    model.ar_predict_layer = _FixedLogits(logits)
    phones, bert, prompt = torch.tensor([1, 2, 3]), torch.zeros(BERT_DIM, 3), torch.tensor([4, 4, 4])
    params = SamplingParams(top_k=1, repetition_penalty=1.0)
    y, idx = model.infer_naive(phones, bert, prompt, params)
    assert idx == MAX_DECODE_STEPS - 1 and y.shape == (1, 3 + MAX_DECODE_STEPS)
    y_list, idx_list = model.infer_batch([phones], [bert], prompt, params)
    assert idx_list == [MAX_DECODE_STEPS - 1] and y_list[0].shape == (3 + MAX_DECODE_STEPS - 1,)
    for parallel in (False, True):  # the engine's entry keeps every generated token on both paths
        tokens = model.generate([phones], [bert], prompt, params, early_stop_num=-1, parallel=parallel)[0]
        assert tokens.tolist() == [7] * MAX_DECODE_STEPS
