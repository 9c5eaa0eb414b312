"""Phone-level BERT features (chinese-roberta-wwm-ext-large) for the GPT's text input.

GPT-SoVITS takes the third-from-last hidden layer, one row per character of the normalised Chinese text, and
repeats each row once per phone of that character (``word2ph``). Only "zh" segments get BERT features; every
other language gets zeros of the same width.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from gsv_core.errors import CheckpointError, GSVError
from gsv_core.features.hubert import check_model_folder

REQUIRED_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
LAYER = -3  # hidden_states[-3]: output of layer 22 of 24 in the real model


class BertPhoneFeatures(nn.Module):
    """Wraps transformers' tokenizer and masked-LM model (``.model``); move it with ``.to(device, dtype)``."""

    def __init__(self, folder: str | Path, max_batch: int = 16):
        super().__init__()
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        folder = Path(folder).expanduser()
        what = "BERT (chinese-roberta-wwm-ext-large)"
        check_model_folder(folder, what, REQUIRED_FILES, WEIGHT_FILES)
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(f"{what} folder {folder} is incomplete: missing {' or '.join(TOKENIZER_FILES)}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            # transformers 5 loads in the checkpoint's stored dtype by default; pin float32 like 4.x did.
            self.model = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True).float().eval()
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cannot load BERT from {folder}: {err}") from None
        self._trim()
        self.folder = folder
        self.max_batch = max_batch
        self.hidden_size = int(self.model.config.hidden_size)
        self.max_tokens = int(getattr(self.model.config, "max_position_embeddings", 512))

    def train(self, mode: bool = True) -> "BertPhoneFeatures":
        # Frozen feature extractor: dropout must never run.
        return super().train(False)

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())

    def input_ids(self, norm_text: str) -> Tensor:
        """Token ids [1, len + 2] including [CLS] and [SEP]."""
        return self.tokenizer(norm_text, return_tensors="pt")["input_ids"]

    @torch.no_grad()
    def char_features(self, norm_texts: Sequence[str]) -> list[Tensor]:
        """Hidden layer ``LAYER`` for each text, [len(text) + 2, hidden] with the [CLS]/[SEP] rows, batched."""
        out: list[Tensor] = []
        for start in range(0, len(norm_texts), self.max_batch):
            chunk = list(norm_texts[start : start + self.max_batch])
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True)
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            for text, n in zip(chunk, lengths):
                # The phone alignment needs exactly one token per character (the zh normaliser guarantees it).
                if n != len(text) + 2:
                    raise GSVError(f"BERT tokenised {text!r} into {n - 2} tokens for {len(text)} characters")
                if n > self.max_tokens:
                    raise GSVError(f"text too long for BERT ({len(text)} characters, at most {self.max_tokens - 2})")
            enc = {k: v.to(self._param.device) for k, v in enc.items()}
            hidden = self._hidden_layer(enc)
            out.extend(hidden[i, :n] for i, n in enumerate(lengths))
        return out

    def _hidden_layer(self, enc: dict) -> Tensor:
        """``hidden_states[LAYER]`` of the full model (see ``_trim``)."""
        if self._encoder is not None:
            return self._encoder(**enc).last_hidden_state
        return self.model(**enc, output_hidden_states=True).hidden_states[LAYER]

    def _trim(self) -> None:
        """Keep only what ``hidden_states[LAYER]`` depends on.

        The features are the output of layer L-2 of L: the last two layers and the masked-LM head (about as much
        work per token as two more layers) never contribute. Dropping them once at load gives the same numbers
        for roughly 15 % less work with the 24-layer model."""
        bert = getattr(self.model, "bert", None)
        layers = getattr(getattr(bert, "encoder", None), "layer", None)
        object.__setattr__(self, "_encoder", None)  # a plain reference, not a second registered submodule
        if bert is None or layers is None or len(layers) + 1 + LAYER <= 0:
            return
        bert.encoder.layer = layers[: len(layers) + 1 + LAYER]  # hidden_states = embeddings + one per layer
        object.__setattr__(self, "_encoder", bert)

    def phone_features_batch(self, items: Sequence[tuple[str, Sequence[int]]]) -> list[Tensor]:
        """For each (norm_text, word2ph): [hidden, sum(word2ph)], row i of the text repeated word2ph[i] times."""
        for text, word2ph in items:
            if len(word2ph) != len(text):
                raise GSVError(
                    f"word2ph has {len(word2ph)} entries but the normalised text {text!r} has {len(text)} characters"
                )
            if any(int(k) < 0 for k in word2ph):
                raise GSVError(f"word2ph has negative phone counts: {list(word2ph)}")
        feats = self.char_features([text for text, _ in items])
        result = []
        for (_, word2ph), h in zip(items, feats):
            counts = torch.as_tensor([int(k) for k in word2ph], device=h.device)
            result.append(torch.repeat_interleave(h[1:-1], counts, dim=0).T)
        return result

    def phone_features(self, norm_text: str, word2ph: Sequence[int]) -> Tensor:
        """[hidden, sum(word2ph)] phone-level features of one normalised Chinese text."""
        return self.phone_features_batch([(norm_text, word2ph)])[0]

    def zeros(self, n_phones: int, dtype: torch.dtype | None = None) -> Tensor:
        """The features of a non-Chinese segment: zeros [hidden, n_phones] on the model's device."""
        return torch.zeros(self.hidden_size, n_phones, device=self._param.device, dtype=dtype or self._param.dtype)
