"""Training data of the SoVITS (s2) stage: items, batching and the length-bucketed sampler.

An utterance is used when it has every feature the stage reads (upstream ``TextAudioSpeakerLoader``):

* a row in ``2-name2text.txt`` (``name<TAB>phones<TAB>word2ph<TAB>norm_text``) whose phones are all in the model's
  symbol table,
* ``4-cnhubert/<name>.pt`` (HuBERT features [1, 768, T]) and ``5-wav32k/<name>`` (the 32 kHz int16 wav),
* for v2Pro/v2ProPlus ``7-sv_cn/<name>.pt`` (the [1, 20480] speaker-verification embedding),

restricted to the names of a split list (``data/train.list`` by default; ``split=None`` uses every name with
features). Durations come from the wav file size as upstream does (``size / sr / 2``) and only 0.6 s < d < 54 s
is kept.

Epoch length: as upstream, a set of fewer than 100 utterances is repeated ``max(2, int(100 / n))`` times, and the
list is shuffled once with seed 1234; so even a 3-clip experiment has epochs of ~99 items (e.g. 25 steps at batch
size 4), which is what upstream's "epochs" mean for small sets. Tests cap the run with ``max_steps``.

Batches come from :class:`BucketBatchSampler` (upstream ``DistributedBucketSampler``): lengths in 50 Hz frames are
grouped by the boundaries ``[32, 300, 400, ..., 1900]`` (items outside (32, 1900] frames are left out), every
bucket is padded by repetition to a multiple of ``world_size * batch_size``, each rank takes every
``world_size``-th item of each shuffled bucket, and the batches are shuffled; the permutations are drawn from a
generator seeded with ``seed + epoch``, so every rank agrees and every epoch differs. :func:`collate` sorts a
batch by spectrogram length and zero-pads HuBERT features and spectrograms to the even length
``2 * (max // 2 + 1)``, waveforms to the longest one and phone ids to the longest sequence.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from gsv_core.audio import load_audio
from gsv_core.errors import GSVError
from gsv_core.features.spectrogram import linear_spectrogram
from gsv_core.text.symbols import symbol_to_id

from gsv_core.versions import VERSIONS

from .common import TrainingError
from .layout import ExperimentLayout

PRO_VERSIONS = tuple(v for v, m in VERSIONS.items() if m.speaker_embedding)
BUCKET_BOUNDARIES = (32, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800,
                     1900)
MIN_ITEMS = 100  # smaller sets are repeated up to about this many items per epoch (upstream)
SHUFFLE_SEED = 1234
MIN_SECONDS, MAX_SECONDS = 0.6, 54.0

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class AudioParams:
    sampling_rate: int = 32000
    filter_length: int = 2048
    hop_length: int = 640
    win_length: int = 2048

    @classmethod
    def from_config(cls, data: dict) -> "AudioParams":
        return cls(int(data.get("sampling_rate", 32000)), int(data.get("filter_length", 2048)),
                   int(data.get("hop_length", 640)), int(data.get("win_length", 2048)))


def split_names(layout: ExperimentLayout, split: str | None) -> set[str] | None:
    """Base names of the audio files listed in ``data/<split>.list`` (None: no restriction)."""
    if split is None:
        return None
    path = layout.split_list(split)
    if not path.is_file():
        raise TrainingError(
            f"{path} does not exist: run the data stage to write the {split} split first, or train on every "
            "utterance that has features (split=None / --split all)")
    from gsv_core.formats import listfile

    try:
        names = set(listfile.audio_names(path))
    except listfile.ListFormatError as exc:
        raise TrainingError(str(exc)) from None
    if not names:
        raise TrainingError(f"{path} lists no utterances")
    return names


def _read_name2text(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise TrainingError(f"{path} is missing: run the text feature stage (1-get-text) before SoVITS training")
    phones: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").strip("\n").split("\n"):
        parts = line.split("\t")
        if len(parts) != 4:
            continue  # upstream skips malformed rows the same way
        phones[parts[0]] = parts[1].split(" ")
    return phones


def _names_in(folder: Path, suffix: str, stage: str) -> set[str]:
    if not folder.is_dir():
        raise TrainingError(f"{folder} is missing: run the {stage} stage before SoVITS training")
    return {p.name[: len(p.name) - len(suffix)] if suffix else p.name
            for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix) and not p.name.startswith(".")}


class S2Dataset(torch.utils.data.Dataset):
    """Items ``(ssl [1, 768, T], spec [1025, T], wav [1, L], phone ids [N] (long), sv [1, 20480] or None)``."""

    def __init__(self, layout: ExperimentLayout, version: str, audio: AudioParams = AudioParams(),
                 split: str | None = "train", log: LogFn | None = None, min_items: int = MIN_ITEMS):
        self.layout = layout
        self.version = version
        self.is_pro = version in PRO_VERSIONS
        self.audio = audio
        say = log or (lambda _msg: None)

        phones = _read_name2text(layout.name2text)
        have = set(phones)
        have &= _names_in(layout.hubert_dir, ".pt", "HuBERT / 32 kHz wav feature (2-get-hubert-wav32k)")
        have &= _names_in(layout.wav32k_dir, "", "HuBERT / 32 kHz wav feature (2-get-hubert-wav32k)")
        if self.is_pro:
            have &= _names_in(layout.sv_dir, ".pt", f"speaker-verification feature (2-get-sv, needed by {version})")
        wanted = split_names(layout, split)
        if wanted is not None:
            missing = wanted - have
            if missing:
                say(f"{len(missing)} of {len(wanted)} utterances of {split}.list have no complete features and are "
                    f"skipped (e.g. {sorted(missing)[:3]})")
            have &= wanted
        if not have:
            where = f" for the names in {split}.list" if wanted is not None else ""
            raise TrainingError(
                f"no utterance in {layout.root} has every SoVITS feature{where} (2-name2text.txt, 4-cnhubert, "
                f"5-wav32k{', 7-sv_cn' if self.is_pro else ''}): run the feature stage first")

        names = sorted(have)  # upstream starts from an unordered set; sorting makes the shuffle reproducible
        base = list(names)
        if len(base) < min_items:
            names = []
            for _ in range(max(2, int(min_items / len(base)))):
                names += base
        random.Random(SHUFFLE_SEED).shuffle(names)

        table = symbol_to_id(version)
        self.items: list[tuple[str, list[int]]] = []
        self.lengths: list[int] = []
        skipped_phone, skipped_dur = set(), set()
        for name in names:
            try:
                ids = [table[p] for p in phones[name]]
            except KeyError:
                skipped_phone.add(name)
                continue
            size = (layout.wav32k_dir / name).stat().st_size
            seconds = size / audio.sampling_rate / 2
            if not (MIN_SECONDS < seconds < MAX_SECONDS):
                skipped_dur.add(name)
                continue
            self.items.append((name, ids))
            self.lengths.append(size // (2 * audio.hop_length))
        if skipped_phone:
            say(f"{len(skipped_phone)} utterance(s) have phones outside the {version} symbol table and are skipped "
                f"(e.g. {sorted(skipped_phone)[:3]})")
        if skipped_dur:
            say(f"{len(skipped_dur)} utterance(s) are not between {MIN_SECONDS} and {MAX_SECONDS} s and are skipped "
                f"(e.g. {sorted(skipped_dur)[:3]})")
        if len(self.items) < 2:
            raise TrainingError(
                f"{layout.root}: no usable utterance for SoVITS training (each needs 0.6-54 s of audio and phones of "
                f"the {version} symbol table); {len(skipped_dur)} too short/long, {len(skipped_phone)} bad phones")
        self.unique_names = sorted({n for n, _ in self.items})

    def __len__(self) -> int:
        return len(self.items)

    def _load_tensor(self, path: Path, what: str) -> torch.Tensor:
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainingError(f"{path}: the {what} cannot be read ({type(exc).__name__}: {str(exc)[:160]}); "
                                "delete it and run the feature stage again") from exc
        if not isinstance(value, torch.Tensor):
            raise TrainingError(f"{path}: expected a tensor ({what}), found {type(value).__name__}; "
                                "delete it and run the feature stage again")
        return value

    def __getitem__(self, index: int):
        name, ids = self.items[index]
        wav_path = self.layout.wav32k_dir / name
        try:
            wav, _ = load_audio(wav_path, sr=self.audio.sampling_rate)
        except GSVError as exc:
            raise TrainingError(f"{wav_path}: {exc}; run the feature stage again for this clip") from exc
        wav_t = torch.from_numpy(wav).float()[None]
        a = self.audio
        spec = linear_spectrogram(wav_t, a.filter_length, a.hop_length, a.win_length)[0]
        ssl = self._load_tensor(self.layout.hubert_dir / f"{name}.pt", "HuBERT features").float()
        if ssl.dim() != 3 or ssl.size(0) != 1:
            raise TrainingError(f"{self.layout.hubert_dir / (name + '.pt')}: HuBERT features must be [1, 768, T], "
                                f"found {list(ssl.shape)}; run the feature stage again")
        if ssl.size(-1) != spec.size(-1):
            ssl = F.pad(ssl, (0, 1), mode="replicate")  # upstream pads one repeated frame, whatever the gap
        sv = None
        if self.is_pro:
            sv = self._load_tensor(self.layout.sv_dir / f"{name}.pt", "speaker-verification embedding").float()
            sv = sv.reshape(1, -1)
        return ssl, spec, wav_t, torch.tensor(ids, dtype=torch.long), sv


@dataclass
class S2Batch:
    ssl: torch.Tensor
    ssl_lengths: torch.Tensor
    spec: torch.Tensor
    spec_lengths: torch.Tensor
    wav: torch.Tensor
    wav_lengths: torch.Tensor
    text: torch.Tensor
    text_lengths: torch.Tensor
    sv_emb: torch.Tensor | None = None

    def to(self, device: torch.device) -> "S2Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return S2Batch(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


def collate(batch: Sequence[tuple]) -> S2Batch:
    """Sort by spectrogram length (longest first) and zero-pad as upstream's ``TextAudioSpeakerCollate``."""
    order = sorted(range(len(batch)), key=lambda i: -batch[i][1].size(1))  # stable, like a descending sort
    even = lambda n: 2 * (n // 2 + 1)  # noqa: E731
    n = len(batch)
    max_ssl = even(max(b[0].size(2) for b in batch))
    max_spec = even(max(b[1].size(1) for b in batch))
    max_wav = max(b[2].size(1) for b in batch)
    max_text = max(b[3].size(0) for b in batch)
    ssl = torch.zeros(n, batch[0][0].size(1), max_ssl)
    spec = torch.zeros(n, batch[0][1].size(0), max_spec)
    wav = torch.zeros(n, 1, max_wav)
    text = torch.zeros(n, max_text, dtype=torch.long)
    lens = {k: torch.zeros(n, dtype=torch.long) for k in ("ssl", "spec", "wav", "text")}
    is_pro = batch[0][4] is not None
    sv = torch.zeros(n, batch[0][4].numel()) if is_pro else None
    for i, j in enumerate(order):
        s, sp, w, t, v = batch[j]
        ssl[i, :, : s.size(2)] = s[0]
        spec[i, :, : sp.size(1)] = sp
        wav[i, :, : w.size(1)] = w
        text[i, : t.size(0)] = t
        lens["ssl"][i], lens["spec"][i], lens["wav"][i], lens["text"][i] = s.size(2), sp.size(1), w.size(1), t.size(0)
        if is_pro:
            sv[i] = v.reshape(-1)
    return S2Batch(ssl, lens["ssl"], spec, lens["spec"], wav, lens["wav"], text, lens["text"], sv)


class BucketBatchSampler:
    """Length-bucketed batches for one rank (upstream ``DistributedBucketSampler``, seed = ``seed + epoch``)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, boundaries: Sequence[int] = BUCKET_BOUNDARIES,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        if batch_size < 1:
            raise TrainingError(f"batch size must be at least 1, not {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        bounds = list(boundaries)
        buckets: list[list[int]] = [[] for _ in range(len(bounds) - 1)]
        for i, length in enumerate(self.lengths):
            b = self._bucket(bounds, length)
            if b >= 0:
                buckets[b].append(i)
        kept = [(bk, lo, hi) for bk, lo, hi in zip(buckets, bounds[:-1], bounds[1:]) if bk]
        if not kept:
            raise TrainingError(
                f"no training clip is between {bounds[0] / 50:.2f} s and {bounds[-1] / 50:.0f} s long "
                f"({bounds[0]}-{bounds[-1]} frames of 20 ms), so SoVITS training has no batch to run")
        self.buckets = [bk for bk, _, _ in kept]
        total = num_replicas * batch_size
        self.num_samples_per_bucket = [len(bk) + (total - len(bk) % total) % total for bk in self.buckets]
        self.num_samples = sum(self.num_samples_per_bucket) // num_replicas

    @staticmethod
    def _bucket(bounds: Sequence[int], x: int) -> int:
        for i in range(len(bounds) - 1):
            if bounds[i] < x <= bounds[i + 1]:
                return i
        return -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        orders = [torch.randperm(len(bk), generator=g).tolist() if self.shuffle else list(range(len(bk)))
                  for bk in self.buckets]
        batches: list[list[int]] = []
        for bucket, order, wanted in zip(self.buckets, orders, self.num_samples_per_bucket):
            rem = wanted - len(bucket)
            ids = order + order * (rem // len(bucket)) + order[: rem % len(bucket)]
            ids = ids[self.rank:: self.num_replicas]
            for j in range(len(ids) // self.batch_size):
                batches.append([bucket[k] for k in ids[j * self.batch_size: (j + 1) * self.batch_size]])
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[k] for k in perm]
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return self.num_samples // self.batch_size


class ListBatchSampler:
    """A fixed list of index batches (one epoch's batches, possibly without the ones already trained)."""

    def __init__(self, batches: list[list[int]]):
        self._batches = batches

    def __iter__(self):
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
