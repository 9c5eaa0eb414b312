"""Upstream's optional DPO term for GPT (s1) training (``train.if_dpo`` in s1 training, the webui's DPO checkbox).

Each training item's semantic tokens are the *chosen* sequence; a *rejected* one is made from them by one of two
corruptions typical of autoregressive TTS failures, picked with probability 1/2 each (global torch RNG, as upstream):

* repeat: a random span ``y[i:j]`` is said twice (``y[:i] + y[i:j] + y[i:j] + y[j:]``);
* skip:   the span is dropped (``y[:i] + y[j:]``);

with ``i <= j`` two sorted random indices in ``[0, len)``. Both sequences go through the same teacher-forced pass
(text + tokens + EOS, upstream's attention mask) and the loss is

    loss = CE(chosen)  +  mean_b -log sigmoid(beta * (log p(chosen_b) - log p(rejected_b))),   beta = 0.2

a reference-free DPO (no frozen reference model: upstream passes zeros for its log-probabilities), where
``log p`` of a row is the sum of its target log-probabilities over every scored position of the padded batch (the
row's tokens, its EOS and, as upstream, the EOS targets of its padding). Under DPO upstream also halves the batch
size (each item is run twice).

Deviation: upstream cuts the spans from the *padded* token row, so a shorter item's rejected sequence can contain
padding tokens (the EOS id) in its middle; we cut them from the item's real tokens.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

DPO_BETA = 0.2


def make_rejected(tokens: torch.Tensor, token_lens: torch.Tensor,
                  generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rejected sequences (B, Tr) right-padded with 0, and their lengths (B,), from right-padded tokens (B, Ty)."""
    rows: list[torch.Tensor] = []
    for b in range(tokens.shape[0]):
        y = tokens[b, : int(token_lens[b])]
        n = int(y.numel())
        if n == 0:
            rows.append(y)
            continue
        where = generator.device if generator is not None else "cpu"  # drawn where the generator lives
        repeat = int(torch.randint(0, 2, (1,), generator=generator, device=where)) == 0
        i, j = sorted(int(v) for v in torch.randint(0, n, (2,), generator=generator, device=where))
        span = y[i:j]
        rows.append(torch.cat([y[:i], span, span, y[j:]]) if repeat else torch.cat([y[:i], y[j:]]))
    lens = torch.tensor([int(r.numel()) for r in rows], dtype=torch.long, device=tokens.device)
    width = max(1, int(lens.max()))
    out = torch.zeros(len(rows), width, dtype=tokens.dtype, device=tokens.device)
    for b, r in enumerate(rows):
        out[b, : r.numel()] = r
    return out, lens


def _logits(model, phones, phone_lens, bert, tokens, token_lens, text_padding):
    """Teacher-forced logits (B, Ty + 1, V) and targets (B, Ty + 1), as ``Text2Semantic.forward_train`` scores."""
    text_len, audio_len = int(phone_lens.max()), int(token_lens.max())
    inputs, targets = model.train_inputs(tokens[:, :audio_len], token_lens)
    x = model.embed_text(phones[:, :text_len], bert[:, :, :text_len])
    y = model.embed_audio(inputs)
    mask = model.train_mask(phone_lens, token_lens, text_len, audio_len, text_padding)
    hidden = model.h(torch.cat([x, y.to(x.dtype)], dim=1), mask)
    return model.ar_predict_layer(hidden[:, text_len - 1:]), targets


def sequence_logp(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log softmax(logits)[target]: (B,) in float32."""
    return logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)


def dpo_loss(chosen_logp: torch.Tensor, rejected_logp: torch.Tensor, beta: float = DPO_BETA) -> torch.Tensor:
    """Reference-free DPO: mean of -log sigmoid(beta * (chosen - rejected))."""
    return -F.logsigmoid(beta * (chosen_logp - rejected_logp)).mean()


def forward_train_dpo(model, phones: torch.Tensor, phone_lens: torch.Tensor, tokens: torch.Tensor,
                      token_lens: torch.Tensor, bert: torch.Tensor, text_padding: str = "upstream",
                      beta: float = DPO_BETA, top_k: int = 3,
                      generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, accuracy, dpo_term)`` of a batch: the summed cross-entropy of the chosen tokens (as
    ``forward_train``) plus the DPO term against rejected sequences made by :func:`make_rejected`."""
    rejected, rejected_lens = make_rejected(tokens[:, : int(token_lens.max())], token_lens, generator)
    logits, targets = _logits(model, phones, phone_lens, bert, tokens, token_lens, text_padding)
    r_logits, r_targets = _logits(model, phones, phone_lens, bert, rejected, rejected_lens, text_padding)
    ce = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="sum")
    dpo = dpo_loss(sequence_logp(logits, targets), sequence_logp(r_logits, r_targets), beta)
    with torch.no_grad():
        k = min(top_k, logits.shape[-1])
        hits = (logits.topk(k, dim=-1).indices == targets[..., None]).any(dim=-1)
        scored = targets != model.config.eos
        acc = hits[scored].float().sum() / scored.sum().clamp(min=1)
    return ce + dpo, acc, dpo.detach()


__all__ = ["DPO_BETA", "dpo_loss", "forward_train_dpo", "make_rejected", "sequence_logp"]
