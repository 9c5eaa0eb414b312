"""GPT (s1) training data: phones (``2-name2text.txt``) + BERT features (``3-bert/``) + semantic tokens
(``6-name2semantic.tsv``) of the utterances of one split list, with upstream's filters, repetition, collate and
duration-bucketed batches (gsv-spec §5.2)."""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from gsv_core.text.symbols import symbol_to_id
from .common import TrainingError
from .layout import ExperimentLayout

TOKENS_PER_SECOND = 25  # semantic tokens of the 25 Hz models
MIN_ITEMS = 100  # upstream repeats a smaller dataset until it has at least this many items
PHONE_PAD = 0
BERT_DIM = 1024

LogFn = Callable[[str], None]


class S1DataError(TrainingError):
    """GPT training data that is missing or unusable."""


@dataclass(frozen=True)
class S1Item:
    name: str
    phones: tuple[int, ...]
    tokens: tuple[int, ...]

    @property
    def seconds(self) -> float:
        return len(self.tokens) / TOKENS_PER_SECOND


@dataclass
class S1DataReport:
    """What the filters kept and dropped (names per reason, a few of each)."""
    kept: int = 0
    repeated_to: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, name: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(name)

    def summary(self) -> str:
        parts = [f"{self.kept} utterances kept"]
        if self.repeated_to != self.kept:
            parts.append(f"repeated to {self.repeated_to} items (upstream repeats data sets under {MIN_ITEMS})")
        for reason, count in sorted(self.dropped.items()):
            parts.append(f"{count} dropped: {reason} (e.g. {', '.join(self.examples[reason])})")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"kept": self.kept, "repeated_to": self.repeated_to, "dropped": dict(self.dropped),
                "examples": {k: list(v) for k, v in self.examples.items()}}


def read_split_names(path: Path) -> list[str]:
    """Utterance keys (audio base names) of a ``.list`` file (``audio|speaker|lang|text``)."""
    from gsv_core.formats import listfile

    try:
        return listfile.audio_names(path)
    except listfile.ListFormatError as exc:
        raise S1DataError(str(exc)) from None


def read_name2text(path: Path) -> dict[str, list[str]]:
    """``name -> phones`` from ``2-name2text.txt`` (lines ``name<TAB>phones<TAB>word2ph<TAB>text``; other lines are
    skipped as upstream does; a later line for the same name wins)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").strip("\n").split("\n"):
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        out[parts[0]] = parts[1].split(" ")
    return out


def read_name2semantic(path: Path) -> list[tuple[str, str]]:
    """``(name, token string)`` rows of ``6-name2semantic.tsv`` (its ``item_name<TAB>semantic_audio`` header
    line is skipped)."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if number == 1 and parts[0] == "item_name":
            continue
        if len(parts) < 2:
            raise S1DataError(f"{path}, line {number}: expected 'name<TAB>tokens', got {line[:80]!r}; re-run the "
                              "semantic-token feature stage (1Ac)")
        rows.append((parts[0], parts[1]))
    return rows


class S1Dataset(Dataset):
    """Items of one split, filtered as upstream filters them; ``__getitem__`` loads the item's BERT features.

    Filters: more than ``max_sec * 25`` tokens; more than ``max_sec * 25 / 2.5`` phones; phones per second outside
    [3, 25]; names missing from ``2-name2text.txt``; phones not in the model's symbol table. Fewer than 100 items
    are repeated ``max(2, int(100 / n))`` times."""

    def __init__(self, layout: ExperimentLayout, split: Optional[str] = "train", symbol_version: str = "v2",
                 max_sec: float = 54, min_ps_ratio: float = 3, max_ps_ratio: float = 25, log: Optional[LogFn] = None):
        self.layout = layout
        self.bert_dir = layout.bert_dir
        for path, stage in ((layout.name2text, "1Aa (text and BERT features)"),
                            (layout.name2semantic, "1Ac (semantic tokens)")):
            if not path.is_file():
                raise S1DataError(f"{path} is missing: run the feature stage {stage} for experiment "
                                  f"{layout.name!r} before GPT training")
        wanted: Optional[set[str]] = None
        if split is not None:
            split_path = layout.split_list(split)
            if not split_path.is_file():
                raise S1DataError(f"split list {split_path} is missing: run the data stage (split) first, or train "
                                  "on every utterance with features (split 'all')")
            wanted = set(read_split_names(split_path))
            if not wanted:
                raise S1DataError(f"split list {split_path} is empty")
        table = symbol_to_id(symbol_version)
        phones_of = read_name2text(layout.name2text)
        report = S1DataReport()
        items: list[S1Item] = []
        seen_semantic: set[str] = set()
        max_tokens = max_sec * TOKENS_PER_SECOND
        for name, token_text in read_name2semantic(layout.name2semantic):
            if wanted is not None and name not in wanted:
                continue
            seen_semantic.add(name)
            if name not in phones_of:
                report.drop("no phones in 2-name2text.txt", name)
                continue
            try:
                tokens = tuple(int(t) for t in token_text.split(" "))
            except ValueError:
                raise S1DataError(f"{layout.name2semantic}: row {name!r} holds a non-integer token; re-run the "
                                  "semantic-token feature stage (1Ac)") from None
            if len(tokens) > max_tokens:
                report.drop(f"longer than {max_sec:g} s ({int(max_tokens)} tokens)", name)
                continue
            unknown = [p for p in phones_of[name] if p not in table]
            if unknown:
                report.drop(f"phones outside the {symbol_version} symbol table", name)
                continue
            phones = tuple(table[p] for p in phones_of[name])
            if len(phones) > max_tokens / 2.5:
                report.drop(f"more than {int(max_tokens / 2.5)} phones", name)
                continue
            ratio = len(phones) / (len(tokens) / TOKENS_PER_SECOND)
            if ratio > max_ps_ratio or ratio < min_ps_ratio:
                report.drop(f"phones per second outside [{min_ps_ratio:g}, {max_ps_ratio:g}]", name)
                continue
            items.append(S1Item(name, phones, tokens))
        if wanted is not None:
            for name in sorted(wanted - seen_semantic):
                report.drop("no semantic tokens in 6-name2semantic.tsv (re-run feature stage 1Ac)", name)
        report.kept = len(items)
        if not items:
            raise S1DataError(f"no usable GPT training utterance in experiment {layout.name!r}: "
                              f"{report.summary()}")
        if len(items) < MIN_ITEMS:
            items = items * max(2, int(MIN_ITEMS / len(items)))
        report.repeated_to = len(items)
        self.items = items
        self.report = report
        if log is not None:
            log("GPT data: " + report.summary())

    def __len__(self) -> int:
        return len(self.items)

    def seconds(self, index: int) -> float:
        return self.items[index].seconds

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        path = self.bert_dir / f"{item.name}.pt"
        bert = None
        if path.is_file():
            try:
                bert = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise S1DataError(f"BERT features {path} cannot be read ({type(exc).__name__}); delete it and re-run "
                                  "the feature stage 1Aa") from exc
            if not isinstance(bert, torch.Tensor) or bert.dim() != 2 or bert.shape[0] != BERT_DIM \
                    or bert.shape[1] != len(item.phones):
                shape = tuple(bert.shape) if isinstance(bert, torch.Tensor) else type(bert).__name__
                raise S1DataError(f"BERT features {path} are shaped {shape}, expected ({BERT_DIM}, "
                                  f"{len(item.phones)}) for its {len(item.phones)} phones: re-run feature stage 1Aa")
        return {"index": index, "phones": item.phones, "tokens": item.tokens, "bert": bert}


def collate(examples: Sequence[dict], token_pad: int = 1024) -> dict[str, torch.Tensor]:
    """Right-pad phones with 0, tokens with ``token_pad`` (EOS) and BERT features with zeros (items without BERT
    features get zeros)."""
    phone_lens = torch.tensor([len(e["phones"]) for e in examples], dtype=torch.long)
    token_lens = torch.tensor([len(e["tokens"]) for e in examples], dtype=torch.long)
    batch = len(examples)
    phones = torch.full((batch, int(phone_lens.max())), PHONE_PAD, dtype=torch.long)
    tokens = torch.full((batch, int(token_lens.max())), token_pad, dtype=torch.long)
    bert = torch.zeros(batch, BERT_DIM, int(phone_lens.max()), dtype=torch.float32)
    for row, e in enumerate(examples):
        phones[row, : len(e["phones"])] = torch.tensor(e["phones"], dtype=torch.long)
        tokens[row, : len(e["tokens"])] = torch.tensor(e["tokens"], dtype=torch.long)
        if e["bert"] is not None:
            bert[row, :, : e["bert"].shape[1]] = e["bert"].float()
    return {"indices": torch.tensor([e["index"] for e in examples], dtype=torch.long), "phones": phones,
            "phone_lens": phone_lens, "tokens": tokens, "token_lens": token_lens, "bert": bert}


def effective_batch_size(batch_size: int, items: int) -> int:
    """Upstream keeps at least four batches per epoch: ``max(min(batch_size, items // 4), 1)``."""
    return max(min(int(batch_size), items // 4), 1)


class BucketBatches:
    """Upstream's duration-bucketed order, split across ranks, cut into batches.

    Items are sorted by duration and grouped into 2-second buckets; each epoch every bucket is shuffled, the
    concatenation is cut into groups of ``batch_size * world_size``, the groups are shuffled (Python's ``random``
    seeded with ``seed + epoch``), the list is padded by wrapping to a multiple of ``world_size`` and rank ``r``
    takes every ``world_size``-th index from ``r``; consecutive runs of ``batch_size`` of those form its batches."""

    def __init__(self, durations: Sequence[float], batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, bucket_width: float = 2.0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.count = len(durations)
        self.per_rank = math.ceil(self.count / world_size)
        order = sorted(range(self.count), key=lambda i: durations[i])  # stable, as list.sort
        self.buckets: list[list[int]] = []
        current: list[int] = []
        limit = bucket_width
        for i in order:
            if durations[i] < limit:
                current.append(i)
            else:
                self.buckets.append(current)
                current = [i]
                limit += bucket_width
        if current:
            self.buckets.append(current)

    def indices(self, epoch: int) -> list[int]:
        rng = random.Random(self.seed + epoch)
        shuffled = []
        for bucket in self.buckets:
            copy = list(bucket)
            rng.shuffle(copy)
            shuffled.append(copy)
        flat = list(itertools.chain(*shuffled))
        group = self.batch_size * self.world_size
        groups = [flat[g * group:(g + 1) * group] for g in range(math.ceil(len(flat) / group))]
        rng.shuffle(groups)
        ordered = list(itertools.chain(*groups))
        total = self.per_rank * self.world_size
        missing = total - len(ordered)
        if missing > 0:
            ordered += (ordered * math.ceil(missing / len(ordered)))[:missing]
        return ordered[self.rank:total:self.world_size]

    def batches(self, epoch: int) -> list[list[int]]:
        mine = self.indices(epoch)
        return [mine[b:b + self.batch_size] for b in range(0, len(mine), self.batch_size)]

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)
