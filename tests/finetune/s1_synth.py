"""A GPT (s1) feature folder as the feature stage writes it, for training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gsv_core.finetune.layout import ExperimentLayout
from gsv_core.text.symbols import symbols


def make_experiment(root: Path, good: int = 12, seed: int = 0) -> ExperimentLayout:
    """A feature folder as the feature stage writes it: 2-name2text.txt, 6-name2semantic.tsv, some 3-bert/*.pt,
    data/train.list; plus rows every filter must drop."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    table = [s for s in symbols("v2") if s not in ("UNK",)][:700]
    layout = ExperimentLayout(root / "exp1")
    layout.bert_dir.mkdir(parents=True)
    layout.data_dir.mkdir(parents=True)
    text_rows, sem_rows, train = [], ["item_name\tsemantic_audio"], []

    def add(name, n_phones, n_tokens, in_text=True, in_train=True, phones=None, bert=False):
        phones = phones or [table[int(i)] for i in rng.integers(0, len(table), n_phones)]
        if in_text:
            text_rows.append(f"{name}\t{' '.join(phones)}\t[1]\tsome text")
        sem_rows.append(f"{name}\t{' '.join(str(int(t)) for t in rng.integers(0, 1024, n_tokens))}")
        if in_train:
            train.append(f"/abs/clips/{name}|spk|ZH|some text")
        if bert:
            torch.save(torch.randn(1024, len(phones), generator=gen).half(), layout.bert_dir / f"{name}.pt")

    for i in range(good):
        n = int(rng.integers(6, 14))
        add(f"u{i:02d}.wav", n, int(n * 25 / rng.uniform(6, 14)), bert=(i % 3 == 0))
    add("fast.wav", 30, 10)  # 75 phones per second
    add("nophones.wav", 8, 20, in_text=False)
    add("val_only.wav", 8, 20, in_train=False)
    add("badsym.wav", 0, 20, phones=["a", "NOT_A_SYMBOL", "b"])
    add("toolong.wav", 400, 1400)
    layout.name2text.write_text("\n".join(text_rows) + "\n", encoding="utf-8")
    layout.name2semantic.write_text("\n".join(sem_rows) + "\n", encoding="utf-8")
    layout.split_list("train").write_text("\n".join(train) + "\n", encoding="utf-8")
    return layout
