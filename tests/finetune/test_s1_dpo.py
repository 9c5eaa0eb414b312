"""GPT DPO (upstream's if_dpo): the rejected sequences (a span repeated or skipped), the loss against an independent
longhand computation on a tiny batch, and training with DPO (halved batch, dpo column, export config, resume), the
CLI flags."""
from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from gsv_core.checkpoints import load_gpt_checkpoint
from gsv_core.finetune.dpo import DPO_BETA, forward_train_dpo, make_rejected
from gsv_core.finetune.s1_data import S1Dataset, collate
from gsv_core.finetune.s1_train import S1TrainConfig, train_s1
from gsv_core.loading import load_gpt

from .s1_synth import make_experiment

EOS = 1024


def _expected_rejected(tokens, lens, seed):
    """The corruption rule written out: per row draw repeat (0) / skip (1), then two sorted indices in [0, len)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(tokens.shape[0]):
        y = tokens[b, : int(lens[b])].tolist()
        op = int(torch.randint(0, 2, (1,), generator=g))
        i, j = sorted(int(v) for v in torch.randint(0, len(y), (2,), generator=g))
        out.append(y[:i] + y[i:j] * 2 + y[j:] if op == 0 else y[:i] + y[j:])
    return out


def test_rejected_sequences_repeat_or_skip_a_span():
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [1, 2, 3, 4, 0, 0, 0, 0], [20, 21, 22, 23, 24, 25, 0, 0]])
    lens = torch.tensor([8, 4, 6])
    seen = set()
    for seed in range(20):
        rej, rlens = make_rejected(tokens, lens, torch.Generator().manual_seed(seed))
        expected = _expected_rejected(tokens, lens, seed)
        assert rlens.tolist() == [len(e) for e in expected]
        for b, e in enumerate(expected):
            assert rej[b, : len(e)].tolist() == e and rej[b, len(e):].eq(0).all()
            seen.add("longer" if len(e) > lens[b] else "shorter" if len(e) < lens[b] else "same")
    assert {"longer", "shorter"} <= seen  # both corruptions happen


def _longhand_row_logps(model, phones, plens, tokens, tlens, bert):
    """Per-row sum of target log-probabilities over every scored position (padding's EOS targets included), from
    the spec: EOS-padded targets, [text | tokens] with upstream's left-pad text mask, plain softmax attention,
    sinusoids from the formula; float64."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    cfg = model.config
    batch, tx, ty = phones.shape[0], int(plens.max()), int(tlens.max())
    dim, heads = cfg.hidden_dim, cfg.num_heads
    targets = torch.full((batch, ty + 1), EOS, dtype=torch.long)
    for b in range(batch):
        targets[b, : tlens[b]] = tokens[b, : tlens[b]]
    inputs = targets[:, :-1]

    def pe(n):
        out = torch.zeros(n, dim, dtype=torch.double)
        for p in range(n):
            for i in range(0, dim, 2):
                angle = p * math.exp(-i * math.log(10000.0) / dim)
                out[p, i], out[p, i + 1] = math.sin(angle), math.cos(angle)
        return out

    x = sd["ar_text_embedding.word_embeddings.weight"][phones[:, :tx]]
    x = x + bert[:, :, :tx].double().transpose(1, 2) @ sd["bert_proj.weight"].T + sd["bert_proj.bias"]
    x = x + sd["ar_text_position.alpha"] * pe(tx)
    y = sd["ar_audio_embedding.word_embeddings.weight"][inputs] + sd["ar_audio_position.alpha"] * pe(ty)
    h = torch.cat([x, y], 1)
    size = tx + ty
    blocked = torch.zeros(batch, size, size, dtype=torch.bool)
    for b in range(batch):
        for i in range(size):
            for j in range(size):
                if (j >= tx and (i < tx or j > i)) or (j < tx - plens[b]) or (j >= tx and j - tx >= tlens[b]):
                    blocked[b, i, j] = True
    for layer in range(cfg.num_layers):
        pre = f"h.layers.{layer}."
        qkv = h @ sd[pre + "self_attn.in_proj_weight"].T + sd[pre + "self_attn.in_proj_bias"]
        q, k, v = (t.reshape(batch, size, heads, -1).transpose(1, 2) for t in qkv.split(dim, -1))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(dim // heads)).masked_fill(blocked[:, None], float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, size, dim)
        att = att @ sd[pre + "self_attn.out_proj.weight"].T + sd[pre + "self_attn.out_proj.bias"]
        h = F.layer_norm(h + att, (dim,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], 1e-5)
        ff = torch.relu(h @ sd[pre + "linear1.weight"].T + sd[pre + "linear1.bias"])
        ff = ff @ sd[pre + "linear2.weight"].T + sd[pre + "linear2.bias"]
        h = F.layer_norm(h + ff, (dim,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], 1e-5)
    logp = (h[:, tx - 1:] @ sd["ar_predict_layer.weight"].T).log_softmax(-1)
    return [sum(float(logp[b, t, targets[b, t]]) for t in range(ty + 1)) for b in range(batch)]


def test_dpo_loss_matches_a_longhand_computation(parity_dir, tmp_path):
    model, _ = load_gpt(parity_dir / "s1_v2.ckpt")
    model.eval()
    ds = S1Dataset(make_experiment(tmp_path), "train", "v2")
    batch = collate([ds[i] for i in (0, 1, 4)])
    args = (batch["phones"], batch["phone_lens"], batch["tokens"], batch["token_lens"], batch["bert"])
    loss, acc, dpo = forward_train_dpo(model, *args, generator=torch.Generator().manual_seed(3))
    chosen = _longhand_row_logps(model, *args)
    rejected_rows = _expected_rejected(batch["tokens"], batch["token_lens"], 3)
    rlens = torch.tensor([len(r) for r in rejected_rows])
    rtokens = torch.zeros(len(rejected_rows), int(rlens.max()), dtype=torch.long)
    for b, r in enumerate(rejected_rows):
        rtokens[b, : len(r)] = torch.tensor(r)
    rejected = _longhand_row_logps(model, batch["phones"], batch["phone_lens"], rtokens, rlens, batch["bert"])
    ref_dpo = sum(-math.log(1 / (1 + math.exp(-DPO_BETA * (c - r)))) for c, r in zip(chosen, rejected)) / len(chosen)
    ref_loss = -sum(chosen) + ref_dpo  # the summed cross-entropy of the chosen rows + the DPO term
    assert float(dpo) == pytest.approx(ref_dpo, rel=1e-4, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-5)
    plain, plain_acc = model.forward_train(*args)
    assert float(plain_acc) == pytest.approx(float(acc))
    assert float((loss - plain).detach()) == pytest.approx(float(dpo), rel=1e-4)
    # gradients reach the model through both sequences
    model.train()
    loss, _, _ = forward_train_dpo(model, *args, generator=torch.Generator().manual_seed(3))
    loss.backward()
    assert model.ar_predict_layer.weight.grad is not None


def test_training_with_dpo_halves_the_batch_logs_and_resumes(parity_dir, tmp_path):
    layout = make_experiment(tmp_path)
    cfg = dict(pretrained_s1=str(parity_dir / "s1_v2.ckpt"), batch_size=8, epochs=1, save_every_epochs=1,
               device="cpu", precision="fp32", export_dir=str(tmp_path / "w"), export_name="voice", dpo=True)
    first = train_s1(layout, S1TrainConfig(**cfg, max_steps=2))
    assert first.steps == 2 and not first.exports
    messages = []
    done = train_s1(layout, S1TrainConfig(**cfg, max_steps=3), log=messages.append)
    assert done.steps == 3 and any("batch size 4" in m and "DPO" in m for m in messages)  # 8 // 2, as upstream
    rows = list(csv.DictReader(open(layout.s1_dir / "losses.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(float(r["dpo"]) > 0 for r in rows)
    assert all(float(r["loss"]) > float(r["dpo"]) for r in rows)
    with pytest.raises(Exception, match="different GPT training setup"):
        train_s1(layout, S1TrainConfig(**{**cfg, "dpo": False}, max_steps=4))  # a DPO state is not resumed without
    from gsv_core.finetune.s1_train import export_config

    config = export_config(load_gpt_checkpoint(parity_dir / "s1_v2.ckpt").config, S1TrainConfig(**cfg), layout,
                           tmp_path / "w", "voice", "32")
    assert config["train"]["if_dpo"] is True  # what the export records, as upstream's webui


def test_cli_flags(tmp_path, monkeypatch):
    from config import load_settings
    from gsv_core.finetune.__main__ import _config_from_args, _parser

    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    args = _parser().parse_args(["train-s1", "--name", "x", "--version", "v3", "--dpo", "--s2-lora-rank", "64"])
    cfg = _config_from_args(settings, args)
    assert cfg.version == "v3" and cfg.s1["dpo"] is True and cfg.s2["lora_rank"] == 64
    from gsv_core.finetune.s1_train import main

    with pytest.raises(SystemExit):
        main(["--help"])
