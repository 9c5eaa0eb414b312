"""GPT (s1) finetuning: training loss against an independent re-computation of upstream's formula, ScaledAdam and
the schedule quirk, data filters, full and LoRA training with exports, exact resume, DDP (2 gloo processes)."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsv_core.checkpoints import load_gpt_checkpoint
from gsv_core.finetune.common import load_state, save_state
from gsv_core.finetune.layout import ExperimentLayout
from gsv_core.finetune.optim import ScaledAdam, WarmupCosineSchedule
from gsv_core.finetune.s1_data import BucketBatches, S1DataError, S1Dataset, collate, effective_batch_size
from gsv_core.finetune.s1_train import S1TrainConfig, add_lora, merged_state_dict, train_s1
from gsv_core.loading import load_gpt
from gsv_core.models.s1 import Text2Semantic

from .s1_synth import make_experiment as _make_experiment

REPO = Path(__file__).resolve().parents[2]
EOS = 1024


@pytest.fixture()
def experiment(tmp_path) -> ExperimentLayout:
    return _make_experiment(tmp_path)


@pytest.fixture(scope="module")
def gpt_path(parity_dir) -> Path:
    return parity_dir / "s1_v2.ckpt"


def _cfg(gpt_path: Path, tmp: Path, **kw) -> S1TrainConfig:
    base = dict(pretrained_s1=str(gpt_path), batch_size=8, epochs=1, save_every_epochs=1, device="cpu",
                precision="fp32", export_dir=str(tmp / "weights"), export_name="voice")
    base.update(kw)
    return S1TrainConfig(**base)


# -- data ----------------------------------------------------------------------------------------------------------

def test_dataset_filters_repeat_collate_and_buckets(experiment):
    messages = []
    ds = S1Dataset(experiment, "train", "v2", 54, log=messages.append)
    rep = ds.report
    assert rep.kept == 12 and rep.repeated_to == 12 * 8 == len(ds)
    assert sum(rep.dropped.values()) == 4
    reasons = " | ".join(rep.dropped)
    for word in ("phones per second", "2-name2text", "symbol table", "54 s"):
        assert word in reasons
    assert "val_only.wav" not in str(rep.examples)
    assert messages and "12 utterances kept" in messages[0]

    items = [ds[i] for i in range(3)]
    batch = collate(items)
    longest = max(len(e["phones"]) for e in items)
    assert batch["phones"].shape == (3, longest) and batch["bert"].shape == (3, 1024, longest)
    for row, e in enumerate(items):
        assert batch["phones"][row, len(e["phones"]):].eq(0).all()
        assert batch["tokens"][row, len(e["tokens"]):].eq(1024).all()
        assert batch["bert"][row, :, len(e["phones"]):].eq(0).all()
    assert items[0]["bert"] is not None  # u00 has BERT features, u01 not (zeros)
    assert items[1]["bert"] is None and batch["bert"][1].eq(0).all()

    bs = effective_batch_size(8, len(ds))
    assert bs == 8 and effective_batch_size(8, 10) == 2 and effective_batch_size(8, 2) == 1
    one = BucketBatches([ds.seconds(i) for i in range(len(ds))], bs)
    assert one.batches(3) == one.batches(3) and one.batches(3) != one.batches(4)
    assert sorted(i for b in one.batches(0) for i in b) == list(range(len(ds)))
    ranks = [BucketBatches([ds.seconds(i) for i in range(len(ds))], bs, 2, r) for r in (0, 1)]
    both = [i for r in ranks for b in r.batches(0) for i in b]
    assert len(ranks[0]) == len(ranks[1]) and sorted(both) == list(range(len(ds)))


def test_missing_features_name_the_stage(tmp_path):
    layout = ExperimentLayout(tmp_path / "empty")
    layout.root.mkdir()
    with pytest.raises(S1DataError, match="1Aa"):
        S1Dataset(layout)
    layout.name2text.write_text("a.wav\ta b\t[1]\tx\n", encoding="utf-8")
    with pytest.raises(S1DataError, match="1Ac"):
        S1Dataset(layout)


# -- loss ----------------------------------------------------------------------------------------------------------

def _naive_upstream_loss(model: Text2Semantic, phones, plens, tokens, tlens, bert, mode="upstream"):
    """Upstream's training forward written out longhand from the spec (explicit loops for the mask and targets, a
    plain softmax attention, sinusoids from the formula)."""
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
                if j >= tx and (i < tx or j > i):
                    blocked[b, i, j] = True
                if j < tx and (j < tx - plens[b] if mode == "upstream" else j >= plens[b]):
                    blocked[b, i, j] = True
                if j >= tx and j - tx >= tlens[b]:
                    blocked[b, i, j] = True
    for layer in range(cfg.num_layers):
        pre = f"h.layers.{layer}."
        qkv = h @ sd[pre + "self_attn.in_proj_weight"].T + sd[pre + "self_attn.in_proj_bias"]
        q, k, v = (t.reshape(batch, size, heads, -1).transpose(1, 2) for t in qkv.split(dim, -1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // heads)
        scores = scores.masked_fill(blocked[:, None], float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, size, dim)
        att = att @ sd[pre + "self_attn.out_proj.weight"].T + sd[pre + "self_attn.out_proj.bias"]
        h = F.layer_norm(h + att, (dim,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], 1e-5)
        ff = torch.relu(h @ sd[pre + "linear1.weight"].T + sd[pre + "linear1.bias"])
        ff = ff @ sd[pre + "linear2.weight"].T + sd[pre + "linear2.bias"]
        h = F.layer_norm(h + ff, (dim,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], 1e-5)
    logits = h[:, tx - 1:] @ sd["ar_predict_layer.weight"].T
    logp = logits.log_softmax(-1)
    loss = -sum(logp[b, t, targets[b, t]] for b in range(batch) for t in range(ty + 1))
    top3 = logits.topk(3, -1).indices
    hits = [(targets[b, t] in top3[b, t]) for b in range(batch) for t in range(ty + 1) if targets[b, t] != EOS]
    return float(loss), sum(hits) / len(hits)


@pytest.mark.parametrize("mode", ["upstream", "right"])
def test_training_loss_matches_naive_upstream_formula(gpt_path, experiment, mode):
    model, _ = load_gpt(gpt_path)
    ds = S1Dataset(experiment, "train", "v2")
    batch = collate([ds[i] for i in (0, 1, 4, 5)])
    assert len(set(batch["phone_lens"].tolist())) > 1 and len(set(batch["token_lens"].tolist())) > 1
    model.eval()
    loss, acc = model.forward_train(batch["phones"], batch["phone_lens"], batch["tokens"], batch["token_lens"],
                                    batch["bert"], text_padding=mode)
    ref_loss, ref_acc = _naive_upstream_loss(model, batch["phones"], batch["phone_lens"], batch["tokens"],
                                             batch["token_lens"], batch["bert"], mode)
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-5)
    assert float(acc) == pytest.approx(ref_acc, abs=1e-9)

    # one unpadded item: the teacher-forced logits are the inference forward's (prompt = the tokens)
    one = collate([ds[2]])
    logits = model(one["phones"], one["bert"], one["tokens"])[:, one["phones"].shape[1] - 1:]
    targets = torch.cat([one["tokens"], torch.tensor([[EOS]])], 1)
    direct = F.cross_entropy(logits[0], targets[0], reduction="sum")
    single, _ = model.forward_train(one["phones"], one["phone_lens"], one["tokens"], one["token_lens"], one["bert"])
    assert float(single.detach()) == pytest.approx(float(direct.detach()), rel=1e-5)

    # dropout acts only in train mode
    model.train()
    torch.manual_seed(0)
    noisy, _ = model.forward_train(batch["phones"], batch["phone_lens"], batch["tokens"], batch["token_lens"],
                                   batch["bert"], text_padding=mode)
    assert abs(float(noisy) - float(loss)) > 1e-3


def test_overfit_one_batch_with_scaled_adam(gpt_path, experiment):
    torch.manual_seed(0)
    model, _ = load_gpt(gpt_path)
    model.train()
    ds = S1Dataset(experiment, "train", "v2")
    batch = collate([ds[i] for i in range(2)])
    opt = ScaledAdam(model.parameters(), lr=0.01, betas=(0.9, 0.95), clipping_scale=2.0)
    args = (batch["phones"], batch["phone_lens"], batch["tokens"], batch["token_lens"], batch["bert"])
    model.eval()
    with torch.no_grad():
        first, _ = model.forward_train(*args)
    model.train()
    for _ in range(50):
        opt.zero_grad()
        loss, _ = model.forward_train(*args)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        last, acc = model.forward_train(*args)
    assert float(last) < 0.6 * float(first), (float(first), float(last))
    assert float(acc) > 0.3


# -- optimiser and schedule ------------------------------------------------------------------------------------------

def test_scaled_adam_first_step_and_state_roundtrip(tmp_path):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5) * 0.3)
    s = torch.nn.Parameter(torch.tensor([0.7]))
    w0, s0 = w.detach().clone(), s.detach().clone()
    opt = ScaledAdam([w, s], lr=0.01)
    grad_w = torch.randn(6, 5)
    w.grad, s.grad = grad_w.clone(), torch.tensor([-2.0])
    opt.step()
    # tensors: bias-corrected Adam direction is sign(g) on step 1, scaled by lr * (1 - beta1) * rms(p)
    rms = w0.pow(2).mean().sqrt()
    expected_w = w0 - 0.01 * 0.1 * rms * grad_w / (grad_w.abs() + 1e-8)
    assert torch.allclose(w.detach(), expected_w, atol=1e-7)
    # scalars: plain Adam at lr * scalar_lr_scale
    assert float(s.detach()) == pytest.approx(0.7 + 0.01 * 0.1 * 0.1, abs=1e-7)
    # a scalar's size limit: it is clamped to +-scalar_max before the update
    big = torch.nn.Parameter(torch.tensor([25.0]))
    o2 = ScaledAdam([big])
    big.grad = torch.tensor([1.0])
    o2.step()
    assert float(big.detach()) == pytest.approx(10.0 - 0.01 * 0.1 * 0.1, abs=1e-6)

    # continue for a while (size updates happen every 4 steps), save, reload into a fresh optimiser: identical
    def grads(i):
        g = torch.Generator().manual_seed(100 + i)
        return torch.randn(6, 5, generator=g), torch.randn(1, generator=g)

    for i in range(9):
        w.grad, s.grad = grads(i)
        opt.step()
    save_state(tmp_path / "opt.pt", {"optimizer": opt.state_dict()})
    w2, s2 = torch.nn.Parameter(w.detach().clone()), torch.nn.Parameter(s.detach().clone())
    opt2 = ScaledAdam([w2, s2], lr=0.01)
    opt2.load_state_dict(load_state(tmp_path / "opt.pt")["optimizer"])
    for i in range(9, 15):
        for p_, q_, g in ((w, w2, grads(i)[0]), (s, s2, grads(i)[1])):
            p_.grad, q_.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert torch.equal(w, w2) and torch.equal(s, s2)
    assert opt.state[w]["step"] == 16 and "scale_grads" in opt.state[w]
    assert not torch.equal(w.detach(), w0)


def test_schedule_locks_lr_after_first_step(tmp_path):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ScaledAdam([p], lr=0.01)
    sched = WarmupCosineSchedule(opt, 1e-5, 0.01, 1e-4, 2000, 40000)
    assert opt.param_groups[0]["lr"] == 0.01  # the first optimiser step runs at 0.01
    assert sched.get_last_lr() == [1e-5]
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.002 and sched.get_last_lr() == [0.01]
    for _ in range(5000):
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.002
    save_state(tmp_path / "s.pt", {"schedule": sched.state_dict()})
    again = WarmupCosineSchedule(opt)
    again.load_state_dict(load_state(tmp_path / "s.pt")["schedule"])
    assert again.state_dict() == sched.state_dict()
    free = WarmupCosineSchedule(torch.optim.SGD([p], lr=0.01), 1e-5, 0.01, 1e-4, 2000, 40000, lock_lr=None)
    assert free.curve(0) == 1e-5 and free.curve(2000) == pytest.approx(0.01) and free.curve(50000) == 1e-4


# -- training runs ---------------------------------------------------------------------------------------------------

def _read_export(path: Path):
    ck = load_gpt_checkpoint(path)
    return ck, {k: v.float() for k, v in ck.weight.items()}


def test_full_training_exports_and_resumes_exactly(gpt_path, experiment, tmp_path):
    pre = load_gpt_checkpoint(gpt_path)
    # uninterrupted reference run: 2 epochs of 12 batches
    ref_layout = _make_experiment(tmp_path / "ref")
    ref = train_s1(ref_layout, _cfg(gpt_path, tmp_path / "ref", epochs=2, save_every_epochs=2))
    assert [p.name for p in ref.exports] == ["voice-e2.ckpt"] and ref.steps == 24
    assert ref.optimizer_steps == 4  # batch indices 4 and 8 of each epoch (upstream's rule)

    # the same run, cancelled after 6 batches, then resumed with a mid-epoch state
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] >= 6

    first = train_s1(experiment, _cfg(gpt_path, tmp_path, epochs=2, save_every_epochs=2), cancel=cancel)
    assert first.cancelled and first.steps == 6 and first.exports == []
    state = load_state(experiment.s1_dir / "state_latest.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (0, 6, 6)
    assert state["grads"]  # index 4 stepped; index 5 gradient is pending and saved
    progress = []
    second = train_s1(experiment, _cfg(gpt_path, tmp_path, epochs=2, save_every_epochs=2),
                      progress=lambda f, m: progress.append((f, m)))
    assert not second.cancelled and second.steps == 24 and second.optimizer_steps == 4
    assert progress[-1][0] == pytest.approx(1.0) and "ETA" in progress[-1][1]
    with open(experiment.s1_dir / "losses.csv", newline="") as fh:
        rows = [int(r["step"]) for r in csv.DictReader(fh)]
    assert rows == list(range(1, 25))

    ck, resumed = _read_export(second.exports[-1])
    _, reference = _read_export(ref.exports[-1])
    assert list(ck.weight) == list(pre.weight)
    assert all(ck.weight[k].dtype == torch.float16 for k in ck.weight)
    assert ck.info == "GPT-e2" and ck.config["train"]["exp_name"] == "voice"
    assert ck.config["model"] == pre.config["model"]
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    changed = [k for k in pre.weight if not torch.equal(pre.weight[k], ck.weight[k])]
    assert len(changed) > len(pre.weight) // 2

    model, info = load_gpt(second.exports[-1])
    phones = torch.tensor([5, 9, 33, 41, 8])
    tokens = model.generate([phones], [torch.zeros(1024, 5)], torch.tensor([3, 4, 5]),
                            generator=torch.Generator().manual_seed(0), max_steps=30)
    assert tokens[0].numel() >= 1 and int(tokens[0].max()) < 1024


def test_lora_trains_only_adapters_and_exports_merged(gpt_path, experiment, tmp_path):
    pre = load_gpt_checkpoint(gpt_path)
    # adapters only: base weights stay bit-identical through optimiser steps
    model, _ = load_gpt(gpt_path)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, 4, 8, ("self_attn.in_proj_weight", "out_proj", "linear1", "linear2"))
    model.train()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(names) == 2 * 4 * model.config.num_layers
    ds = S1Dataset(experiment, "train", "v2")
    batch = collate([ds[i] for i in range(4)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        loss, _ = model.forward_train(batch["phones"], batch["phone_lens"], batch["tokens"], batch["token_lens"],
                                      batch["bert"])
        loss.backward()
        opt.step()
    merged = merged_state_dict(model, list(base))
    assert list(merged) == list(base)
    assert all(torch.equal(model.get_parameter(n), base[n.replace(".base_layer", "", 1)])
               for n, _ in model.named_parameters() if "base_layer" in n and n.count("base_layer") == 1
               and "lora_" not in n)
    changed = [k for k in base if not torch.equal(merged[k], base[k])]
    assert any("in_proj_weight" in k for k in changed) and any("linear1" in k for k in changed)
    assert not any("bias" in k or "norm" in k or "embedding" in k for k in changed)
    # the merged weights compute what the adapted model computes
    model.eval()
    plain, _ = load_gpt(gpt_path)
    plain.load_state_dict(merged)
    ph, bert, pr = batch["phones"][:1, :5], batch["bert"][:1, :, :5], batch["tokens"][:1, :6]
    assert torch.allclose(model(ph, bert, pr), plain(ph, bert, pr), atol=1e-4)

    # the trainer: state keeps only adapters, export is a merged official file
    result = train_s1(experiment, _cfg(gpt_path, tmp_path, lora=True, lora_rank=4, lora_lr=5e-3))
    assert [p.name for p in result.exports] == ["voice-e1.ckpt"]
    state = load_state(experiment.s1_dir / "state_latest.pt")
    assert state["weights"] and all("lora_" in k for k in state["weights"])
    ck, weights = _read_export(result.exports[0])
    assert list(ck.weight) == list(pre.weight)
    assert all(ck.weight[k].dtype == pre.weight[k].dtype == torch.float16 for k in ck.weight)
    assert any(not torch.equal(ck.weight[k], pre.weight[k]) for k in ck.weight)
    assert all(torch.equal(ck.weight[k], pre.weight[k]) for k in ck.weight if "norm" in k or "bias" in k)
    gpt, _ = load_gpt(result.exports[0])
    assert gpt.generate([torch.tensor([5, 9, 33])], [torch.zeros(1024, 3)], torch.tensor([1, 2]),
                        generator=torch.Generator().manual_seed(0), max_steps=20)[0].numel() >= 1


def test_ddp_two_gloo_processes_write_one_export(gpt_path, experiment, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MASTER_ADDR="127.0.0.1")
    out = tmp_path / "ddp_weights"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gsv_core.finetune.s1_train", "--exp-dir", str(experiment.root), "--pretrained-s1", str(gpt_path),
           "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--precision", "fp32",
           "--export-dir", str(out), "--export-name", "ddp"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["ddp-e1.ckpt"]
    rows = (experiment.s1_dir / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # 96 items over 2 ranks in batches of 8, logged once (rank 0)
    load_gpt(out / "ddp-e1.ckpt")
