"""Pronunciation of out-of-vocabulary English words by a small GRU encoder-decoder, in numpy.

The weights are ``checkpoint20.npz`` shipped inside the ``g2p_en`` package (Apache-2.0, Kyubyong Park and
Jongseok Kim), read as a file: the package itself is never imported because its import downloads NLTK data. The
network: letters (+ end mark) -> 256-wide embeddings -> one-layer GRU; its last state starts a one-layer GRU
decoder fed with the previous phone, a linear layer picks the next phone greedily, at most 20 phones, stopping at
the end mark. Computations are float32 like the reference so that greedy choices agree.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from gsv_core.text.en_lexicon import package_file

__all__ = ["predict_phones", "GRAPHEMES", "PHONEMES"]

GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
PHONEMES = ["<pad>", "<unk>", "<s>", "</s>"] + (
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 ER0 ER1 ER2 "
    "EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 UH1 UH2 "
    "UW UW0 UW1 UW2 V W Y Z ZH"
).split()
_LETTER_ID = {g: i for i, g in enumerate(GRAPHEMES)}
_START, _END = 2, 3
MAX_PHONES = 20

_LOCK = threading.Lock()


class _GRU:
    """One GRU layer (PyTorch gate layout: reset, update, new)."""

    def __init__(self, w_ih, w_hh, b_ih, b_hh):
        self.w_ih = w_ih
        self.w_hh = w_hh
        self.b_ih = b_ih
        self.b_hh = b_hh
        self.size = w_hh.shape[1]

    def step(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        # same expressions (and so the same float32 rounding) as the reference
        gi = np.matmul(x, self.w_ih.T) + self.b_ih
        gh = np.matmul(h, self.w_hh.T) + self.b_hh
        cut = 2 * self.size
        gates = 1 / (1 + np.exp(-(gi[:, :cut] + gh[:, :cut])))
        reset, update = gates[:, : self.size], gates[:, self.size :]
        candidate = np.tanh(gi[:, cut:] + reset * gh[:, cut:])
        return (1 - update) * candidate + update * h


class _Model:
    def __init__(self):
        with np.load(package_file("g2p_en", "checkpoint20.npz")) as w:
            self.enc_emb = w["enc_emb"]
            self.dec_emb = w["dec_emb"]
            self.encoder = _GRU(w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
            self.decoder = _GRU(w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
            self.out_w = w["fc_w"]
            self.out_b = w["fc_b"]

    def __call__(self, word: str) -> list[str]:
        ids = [_LETTER_ID.get(ch, _LETTER_ID["<unk>"]) for ch in word] + [_LETTER_ID["</s>"]]
        h = np.zeros((1, self.encoder.size), np.float32)
        for i in ids:
            h = self.encoder.step(self.enc_emb[i][None, :], h)
        prev = _START
        out: list[str] = []
        for _ in range(MAX_PHONES):
            h = self.decoder.step(self.dec_emb[prev][None, :], h)
            logits = np.matmul(h, self.out_w.T) + self.out_b
            prev = int(logits.argmax())
            if prev == _END:
                break
            out.append(PHONEMES[prev])
        return out


@functools.lru_cache(maxsize=1)
def _model() -> _Model:
    with _LOCK:
        return _Model()


@functools.lru_cache(maxsize=4096)
def _predict_cached(word: str) -> tuple[str, ...]:
    return tuple(_model()(word))


def predict_phones(word: str) -> list[str]:
    """Predicted ARPAbet phones of a lower-case word (letters outside a-z count as unknown)."""
    return list(_predict_cached(word))
