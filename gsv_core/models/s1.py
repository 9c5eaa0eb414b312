"""s1 GPT: phones + BERT features (+ reference semantic tokens) -> semantic tokens, autoregressively.

Loads upstream's ``Text2SemanticDecoder`` weights unchanged: the attribute tree below is the state-dict key tree of an
exported ``.ckpt`` minus its ``model.`` prefix. Architecture and decoding rules: gsv-spec §3.1.

Decoding reproduces upstream's observable behaviour, quirks included, because the tokens handed to SoVITS depend on
them: EOS cannot be chosen during the first 11 steps, a row stops when the *sampled* token or the argmax of the
repetition-penalised logits is EOS, generation is capped by ``early_stop_num`` and 1500 steps, and the two upstream
entry points trim their results differently (see :meth:`Text2Semantic.infer_naive` / :meth:`infer_batch`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from gsv_core.errors import CheckpointError, GSVError, ModelMismatchError
from gsv_core.models.sampling import SamplingParams, apply_repetition_penalty, filtered_probs, sample_from_probs

BERT_DIM = 1024  # upstream hard-codes the BERT feature width, whatever BERT is used
SEMANTIC_HZ = 50  # TTS.py uses early_stop_num = 50 * max_sec (tokens are 25 Hz, so the 1500-step cap binds first)
MAX_DECODE_STEPS = 1500  # 60 s of 25 Hz tokens
INITIAL_DECODE_CAPACITY = 384  # decoding steps the KV cache holds before it first grows
EOS_BLOCKED_STEPS = 11  # upstream forces at least ~0.4 s of speech before EOS may win


class S1InputError(GSVError, ValueError):
    """Inputs that cannot go through the GPT (length mismatch between phones and BERT features, empty batch...)."""


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S1Config:
    """Sizes of the GPT, read from the ``config["model"]`` section of a ``.ckpt`` (plus ``data.max_sec``)."""

    vocab_size: int = 1025
    phoneme_vocab_size: int = 732
    embedding_dim: int = 512
    hidden_dim: int = 512
    num_heads: int = 16
    num_layers: int = 24
    eos: int = 1024
    max_sec: float = 54
    #: training-only dropout (identity in eval mode): upstream hard-codes 0.1 after the positional encodings, on
    #: the attention weights, after attention and around the FFN; token-embedding dropout is the yaml's ``dropout``
    dropout: float = 0.1
    embedding_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "phoneme_vocab_size", "embedding_dim", "hidden_dim", "num_heads", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"GPT config: {name} must be a positive whole number, got {value!r}")
        if self.eos != self.vocab_size - 1:
            raise CheckpointError(
                f"GPT config: EOS must be the last semantic id (vocab_size - 1 = {self.vocab_size - 1}), got {self.eos}"
            )
        if self.embedding_dim != self.hidden_dim:
            # text/audio embeddings feed the transformer directly, so the two widths have to agree
            raise CheckpointError(
                f"GPT config: embedding_dim ({self.embedding_dim}) differs from hidden_dim ({self.hidden_dim})"
            )
        if self.hidden_dim % self.num_heads:
            raise CheckpointError(f"GPT config: hidden_dim {self.hidden_dim} is not divisible by head {self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        return 4 * self.hidden_dim  # the yaml's linear_units is ignored upstream

    @property
    def early_stop_num(self) -> int:
        # upstream compares "generated > hz * max_sec"; for a whole count that is "> floor(hz * max_sec)"
        return math.floor(SEMANTIC_HZ * self.max_sec)

    @classmethod
    def from_dict(cls, model_cfg: Mapping[str, Any], max_sec: Optional[float] = None) -> "S1Config":
        """Build from a checkpoint's ``config["model"]`` dict (``max_sec`` from ``config["data"]``, default 54)."""
        if not isinstance(model_cfg, Mapping):
            raise CheckpointError(f"GPT config: the model section is a {type(model_cfg).__name__}, not a mapping")
        names = {"vocab_size": "vocab_size", "phoneme_vocab_size": "phoneme_vocab_size",
                 "embedding_dim": "embedding_dim", "hidden_dim": "hidden_dim", "num_heads": "head",
                 "num_layers": "n_layer"}
        missing = [key for key in names.values() if key not in model_cfg]
        if missing:
            raise CheckpointError(f"GPT config: the model section lacks {missing}")
        fields: dict[str, Any] = {ours: model_cfg[theirs] for ours, theirs in names.items()}
        fields["eos"] = model_cfg.get("EOS", fields["vocab_size"] - 1)
        fields["embedding_dropout"] = float(model_cfg.get("dropout", 0) or 0)
        if max_sec is not None:
            fields["max_sec"] = max_sec
        return cls(**fields)

    @classmethod
    def from_checkpoint_config(cls, config: Mapping[str, Any]) -> "S1Config":
        """Build from the whole training-yaml dict stored in a ``.ckpt`` (``model`` and ``data`` sections)."""
        if not isinstance(config, Mapping) or "model" not in config:
            raise CheckpointError("GPT config: no 'model' section")
        data = config.get("data") or {}
        return cls.from_dict(config["model"], data.get("max_sec"))


# ----------------------------------------------------------------------------------------------------------------
# Building blocks (attribute names are checkpoint key names)
# ----------------------------------------------------------------------------------------------------------------


class LookupEmbedding(nn.Module):
    """Token id -> vector; exists only so the table sits under ``<name>.word_embeddings.weight``."""

    def __init__(self, num_embeddings: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.word_embeddings = nn.Embedding(num_embeddings, dim)
        self.dropout = nn.Dropout(dropout)  # no parameters: the key tree is unchanged; identity in eval mode

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.word_embeddings(ids))


def sinusoid(start: int, length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sine/cosine position table rows ``start .. start+length-1`` as float32 (length, dim).

    Evaluated in float32 with the same operations as upstream's precomputed table, on the fly, so it needs no
    buffer (the module stays constructible on the meta device) and has no 4000-position limit.
    """
    positions = torch.arange(start, start + length, dtype=torch.float32, device=device).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim))
    angles = positions * freqs
    table = torch.empty(length, dim, dtype=torch.float32, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table


class ScaledSinusoid(nn.Module):
    """Adds ``alpha * PE[start + t]``; ``alpha`` is learned (checkpoint key ``alpha``), the embedding is not scaled."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(dropout)  # training only

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        pe = sinusoid(start, x.shape[-2], self.dim, x.device).to(x.dtype)
        return self.dropout(x + self.alpha * pe)


class KVCache:
    """Keys/values of every layer in one preallocated tensor (layers, batch, heads, capacity, head_dim).

    Writing a step is a slice assignment and reading is a view, so decoding does not reallocate per token; the
    capacity doubles if a caller runs past it. (The static-cache variant, :mod:`gsv_core.models.s1_static`, keeps
    fixed shapes per length bucket instead, which is what CUDA graphs capture.)
    """

    def __init__(self, num_layers: int, batch: int, heads: int, head_dim: int, capacity: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (num_layers, batch, heads, max(1, capacity), head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def _grow(self, needed: int) -> None:
        shape = list(self.keys.shape)
        shape[3] = max(needed, 2 * shape[3])
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_empty(shape)
            new[:, :, :, : self.length] = old[:, :, :, : self.length]
            setattr(self, name, new)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, T, Dh) at the current position; return all keys/values so far, new ones included."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop finished sequences: keep batch rows ``rows`` (1-D index tensor on the cache's device).

        Only the filled positions are copied: the capacity beyond ``length`` holds nothing yet."""
        for name in ("keys", "values"):
            old = getattr(self, name)
            shape = list(old.shape)
            shape[1] = rows.numel()
            new = old.new_empty(shape)
            new[:, :, :, : self.length] = old[:, :, :, : self.length].index_select(1, rows)
            setattr(self, name, new)


class FusedSelfAttention(nn.Module):
    """Multi-head self-attention with q/k/v stacked in one projection (``in_proj_weight`` rows = q, k, v)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout  # on the attention weights, training only
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3 * dim) stacked q/k/v; fast-path variants (gsv_core.models.quant) override only this."""
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], cache: Optional[KVCache], layer: int):
        batch, length, dim = x.shape
        qkv = self.project_qkv(x)
        q, k, v = qkv.view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.write(layer, k, v)
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # mask: True = may attend
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class DecoderLayer(nn.Module):
    """Post-norm transformer layer: LN(x + attn(x)), then LN(x + W2 relu(W1 x))."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = FusedSelfAttention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        # training-only dropouts (identity in eval mode, so inference numerics do not depend on them)
        self.dropout = nn.Dropout(dropout)  # after the FFN's ReLU
        self.dropout1 = nn.Dropout(dropout)  # on the attention output
        self.dropout2 = nn.Dropout(dropout)  # on the FFN output

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], cache: Optional[KVCache], layer: int):
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask, cache, layer)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class LayerStack(nn.Module):
    def __init__(self, config: S1Config):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(config.hidden_dim, config.num_heads, config.ffn_dim, config.dropout)
            for _ in range(config.num_layers)
        )

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, cache: Optional[KVCache] = None):
        for index, layer in enumerate(self.layers):
            x = layer(x, mask, cache, index)
        if cache is not None:
            cache.advance(x.shape[1])
        return x


class EagerDecodeSession:
    """The decoding state of one :meth:`Text2Semantic._decode` call: a growing :class:`KVCache`, rows dropped from it
    as they finish. Fast-path variants (``gsv_core.models.s1_static``) supply other sessions with the same three
    methods; the decoding rules around them (sampling, EOS, limits) stay in ``_decode``.

    ``prefill(xy)`` -> raw logits (B, V) of the last prefill position; ``step(tokens (B, 1), audio_position)`` ->
    raw logits of the next position; ``keep_rows(index)`` drops finished rows (index into the current rows).
    """

    def __init__(self, model: "Text2Semantic", batch: int, text_len: int, prompt_len: int, budget: int,
                 text_keep: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype):
        cfg = model.config
        self.model, self.text_len, self.prompt_len, self.text_keep = model, text_len, prompt_len, text_keep
        # Start with room for a typical sentence; the cache doubles when a row runs longer (rare), which beats
        # allocating (and copying on every finished row) the full early-stop budget of 2700 steps.
        capacity = text_len + prompt_len + min(budget, INITIAL_DECODE_CAPACITY)
        self.cache = KVCache(cfg.num_layers, batch, cfg.num_heads, cfg.head_dim, capacity, device, dtype)
        self.key_keep = None if text_keep is None else F.pad(text_keep, (0, prompt_len + budget), value=True)

    def prefill(self, xy: torch.Tensor) -> torch.Tensor:
        m = self.model
        mask = m.prefill_mask(self.text_len, self.prompt_len, self.text_keep, xy.device)
        return m.ar_predict_layer(m.h(xy, mask, self.cache)[:, -1])

    def step(self, tokens: torch.Tensor, audio_position: int) -> torch.Tensor:
        m = self.model
        mask = None if self.key_keep is None else self.key_keep[:, None, None, : self.cache.length + 1]
        return m.ar_predict_layer(m.h(m.embed_audio(tokens, audio_position), mask, self.cache)[:, -1])

    def keep_rows(self, index: torch.Tensor) -> None:
        self.cache.keep_rows(index)
        if self.key_keep is not None:
            self.key_keep = self.key_keep.index_select(0, index)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


#: Called with (step, original row indices, raw logits (B, V) float32) before EOS gating and sampling; returns the
#: logits to use. Benchmarks fix the token count with it; it must not change the tensor's shape.
LogitsHook = Callable[[int, list, torch.Tensor], torch.Tensor]
#: Called with (step, original row indices, sampled tokens (B,) long) after every sampling step (streaming).
TokenHook = Callable[[int, list, torch.Tensor], None]
#: One generator shared by all rows, or one per row (a row's draws then do not depend on its batch neighbours).
Generators = Union[None, torch.Generator, Sequence[torch.Generator]]


@dataclass
class _RowOutcome:
    generated: torch.Tensor  # every sampled token of the row, the final one (EOS or not) included
    stop_step: int
    hit_eos: bool


class Text2Semantic(nn.Module):
    """The s1 GPT. Sequence layout: [text positions | semantic positions]; text attends to text only, semantic
    positions to all text and causally to semantic ones. Text and semantic positions both count from 0."""

    def __init__(self, config: S1Config):
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        self.bert_proj = nn.Linear(BERT_DIM, dim)
        self.ar_text_embedding = LookupEmbedding(config.phoneme_vocab_size, dim, config.embedding_dropout)
        self.ar_text_position = ScaledSinusoid(dim, config.dropout)
        self.ar_audio_embedding = LookupEmbedding(config.vocab_size, dim, config.embedding_dropout)
        self.ar_audio_position = ScaledSinusoid(dim, config.dropout)
        self.h = LayerStack(config)
        self.ar_predict_layer = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any], max_sec: Optional[float] = None) -> "Text2Semantic":
        return cls(S1Config.from_dict(model_cfg, max_sec))

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, device: Any = None, dtype: Optional[torch.dtype] = None):
        """Build from a loaded GPT checkpoint (``gsv_core.checkpoints.GPTCheckpoint``: ``.config`` and
        ``.model_state_dict()``), in eval mode, on ``device`` (default CPU) in ``dtype`` (default float32)."""
        config = S1Config.from_checkpoint_config(checkpoint.config)
        with torch.device("meta"):
            model = cls(config)
        model.load_weights(checkpoint.model_state_dict(), assign=True)
        return model.to(device=device or "cpu", dtype=dtype or torch.float32).eval()

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], assign: bool = False) -> None:
        """Strict load with a readable :class:`ModelMismatchError` instead of torch's RuntimeError."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f"{k}: file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
                 for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
            if wrong:
                parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[:3]})")
            raise ModelMismatchError("GPT weights do not fit the architecture in their config: " + "; ".join(parts))
        self.load_state_dict(state_dict, strict=True, assign=assign)

    # -- inputs ------------------------------------------------------------------------------------------------

    def _param(self) -> torch.Tensor:
        return self.bert_proj.weight

    def _as_ids(self, ids: torch.Tensor, limit: int, what: str) -> torch.Tensor:
        ids = torch.as_tensor(ids, device=self._param().device).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= limit):
            hint = " (text processed with the wrong symbol version for this GPT?)" if what == "phone id" else ""
            raise ModelMismatchError(
                f"{what} out of range: got values in [{int(ids.min())}, {int(ids.max())}], this GPT accepts "
                f"0..{limit - 1}{hint}"
            )
        return ids

    def _check_item(self, phones: torch.Tensor, bert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phones = self._as_ids(phones, self.config.phoneme_vocab_size, "phone id")
        param = self._param()
        bert = torch.as_tensor(bert, device=param.device).to(dtype=param.dtype)
        if phones.dim() != 1:
            raise S1InputError(f"phones must be a 1-D id sequence, got shape {tuple(phones.shape)}")
        if bert.dim() != 2 or bert.shape[0] != BERT_DIM:
            raise ModelMismatchError(
                f"BERT features must be shaped ({BERT_DIM}, n_phones), got {tuple(bert.shape)}: is the BERT model "
                f"a {BERT_DIM}-wide one such as chinese-roberta-wwm-ext-large?"
            )
        if bert.shape[1] != phones.shape[0]:
            raise S1InputError(f"{phones.shape[0]} phones but {bert.shape[1]} BERT feature columns")
        return phones, bert

    def _prompt_rows(self, prompt: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
        if prompt is None:
            return None
        prompt = self._as_ids(prompt, self.config.vocab_size, "prompt semantic token")
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)
        if prompt.dim() != 2 or prompt.shape[0] not in (1, batch):
            raise S1InputError(f"prompt must be (T,) or ({batch}, T), got {tuple(prompt.shape)}")
        return prompt.expand(batch, -1)

    def embed_text(self, phones: torch.Tensor, bert: torch.Tensor) -> torch.Tensor:
        """(B, T) phone ids + (B, 1024, T) BERT features -> (B, T, D) text part of the prefill input."""
        x = self.ar_text_embedding(phones) + self.bert_proj(bert.transpose(1, 2))
        return self.ar_text_position(x)

    def embed_audio(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T) semantic ids at positions ``start..`` -> (B, T, D)."""
        return self.ar_audio_position(self.ar_audio_embedding(tokens), start)

    @staticmethod
    def prefill_mask(text_len: int, audio_len: int, text_keep: Optional[torch.Tensor], device):
        """Boolean "may attend" mask (B|1, 1, S, S) for [text | audio]; ``text_keep`` (B, text_len) marks real
        (not padding) text positions. None when everything may attend everything."""
        if audio_len == 0 and text_keep is None:
            return None
        size = text_len + audio_len
        cols = torch.arange(size, device=device)
        allowed = (cols[None, :] < text_len) | (cols[None, :] <= cols[:, None])
        allowed = allowed[None, None]
        if text_keep is not None:
            keys = F.pad(text_keep, (0, audio_len), value=True)
            allowed = allowed & keys[:, None, None, :]  # padding is never a key; padded rows still see real text
        return allowed

    def forward(self, phones: torch.Tensor, bert: torch.Tensor, prompt: Optional[torch.Tensor] = None):
        """Logits (B, T + Tp, vocab) at every position of an unpadded batch, no cache: phones (B, T), bert
        (B, 1024, T), prompt (B, Tp) or None. Position T - 1 + j predicts semantic token j."""
        x = self.embed_text(phones, bert)
        if prompt is not None:
            x = torch.cat([x, self.embed_audio(prompt)], dim=1)
        mask = self.prefill_mask(phones.shape[1], 0 if prompt is None else prompt.shape[1], None, x.device)
        return self.ar_predict_layer(self.h(x, mask))

    # -- training ----------------------------------------------------------------------------------------------

    def train_inputs(self, tokens: torch.Tensor, token_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forcing input and targets of a right-padded token batch (B, Ty): padding becomes EOS.

        The target row is the tokens followed by EOS, with every padded slot EOS as well (B, Ty + 1); the input is
        that row minus its last slot, so input position j holds target j - 1 and position 0 holds token 0."""
        pad = torch.arange(tokens.shape[1], device=tokens.device)[None, :] >= token_lens[:, None]
        codes = tokens.long().masked_fill(pad, 0)
        eos_slots = F.pad(pad.long(), (0, 1), value=1)
        targets = F.pad(codes, (0, 1), value=0) + self.config.eos * eos_slots
        return targets[:, :-1], targets

    @staticmethod
    def train_mask(phone_lens: torch.Tensor, token_lens: torch.Tensor, text_len: int, audio_len: int,
                   text_padding: str = "upstream") -> torch.Tensor:
        """Boolean "may attend" mask (B, 1, S, S) of a training batch [text | semantic].

        Text rows see the text, semantic rows the text and the semantic positions up to their own; padded keys are
        blocked. Upstream blocks the *first* ``text_len - len`` text columns of a shorter item (a left-padding mask)
        although its collate pads phones on the right: ``text_padding="upstream"`` reproduces that, ``"right"``
        blocks the real right-hand padding instead."""
        device = phone_lens.device
        size = text_len + audio_len
        cols = torch.arange(size, device=device)
        allowed = (cols[None, :] < text_len) | (cols[None, :] <= cols[:, None])  # (S, S) structure
        text_cols = torch.arange(text_len, device=device)[None, :]
        if text_padding == "upstream":
            text_keep = text_cols >= (text_len - phone_lens)[:, None]
        elif text_padding == "right":
            text_keep = text_cols < phone_lens[:, None]
        else:
            raise S1InputError(f"text_padding must be 'upstream' or 'right', got {text_padding!r}")
        audio_keep = torch.arange(audio_len, device=device)[None, :] < token_lens[:, None]
        keys = torch.cat([text_keep, audio_keep], dim=1)  # (B, S)
        return allowed[None, None] & keys[:, None, None, :]

    def forward_train(
        self,
        phones: torch.Tensor,
        phone_lens: torch.Tensor,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
        bert: torch.Tensor,
        text_padding: str = "upstream",
        top_k: int = 3,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced training loss of a batch: ``(loss, accuracy)``.

        ``phones`` (B, Tx) right-padded with 0, ``bert`` (B, 1024, Tx) zero-padded, ``tokens`` (B, Ty) semantic ids
        right-padded (any value), lengths (B,). The logits of the last text position and of every semantic
        position (Ty + 1 of them) are scored against the EOS-padded targets with cross-entropy summed over all of
        them, padding included, as upstream does. ``accuracy`` is the top-k (3) hit rate over the positions whose
        target is not EOS (a detached 0-d tensor). Dropout is active in train mode."""
        text_len = int(phone_lens.max())
        audio_len = int(token_lens.max())
        phones, bert, tokens = phones[:, :text_len], bert[:, :, :text_len], tokens[:, :audio_len]
        inputs, targets = self.train_inputs(tokens, token_lens)
        x = self.embed_text(phones, bert)
        y = self.embed_audio(inputs)
        mask = self.train_mask(phone_lens, token_lens, text_len, audio_len, text_padding)
        hidden = self.h(torch.cat([x, y.to(x.dtype)], dim=1), mask)
        logits = self.ar_predict_layer(hidden[:, text_len - 1:])  # (B, Ty + 1, V)
        loss = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="sum")
        with torch.no_grad():
            k = min(top_k, logits.shape[-1])
            hits = (logits.topk(k, dim=-1).indices == targets[..., None]).any(dim=-1)
            scored = targets != self.config.eos
            acc = hits[scored].float().sum() / scored.sum().clamp(min=1)
        return loss, acc

    @torch.no_grad()
    def prefill_logits(self, phones: torch.Tensor, bert: torch.Tensor, prompt: Optional[torch.Tensor] = None):
        """Logits (B, vocab) of the first decoding step (before any EOS masking), for an unpadded batch."""
        return self(phones, bert, prompt)[:, -1]

    # -- decoding ----------------------------------------------------------------------------------------------

    def decode_session(self, batch: int, text_len: int, prompt_len: int, budget: int,
                       text_keep: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype):
        """The state one decoding call runs on (variants override this, nothing else of the decoding loop)."""
        return EagerDecodeSession(self, batch, text_len, prompt_len, budget, text_keep, device, dtype)

    def _decode(
        self,
        text: torch.Tensor,
        text_keep: Optional[torch.Tensor],
        prompt: Optional[torch.Tensor],
        params: SamplingParams,
        early_stop_num: int,
        generator: Generators,
        max_steps: int,
        trace: Optional[list],
        logits_hook: Optional[LogitsHook] = None,
        token_hook: Optional["TokenHook"] = None,
    ) -> list[_RowOutcome]:
        """Prefill ``text`` (B, Tx, D) [+ prompt (B, Tp)] and sample until every row has stopped.

        Rows that stop on EOS leave the batch (and the KV cache) at once, exactly as upstream's batched decoder
        does; this also keeps the shape of every random draw equal to upstream's.
        """
        if max_steps < 1:
            raise S1InputError(f"max_steps must be at least 1, got {max_steps}")
        cfg = self.config
        batch, text_len, _ = text.shape
        device = text.device
        prompt_len = 0 if prompt is None else prompt.shape[1]
        budget = max_steps if early_stop_num == -1 else max(1, min(max_steps, early_stop_num + 1))

        xy = text if prompt is None else torch.cat([text, self.embed_audio(prompt)], dim=1)
        session = self.decode_session(batch, text_len, prompt_len, budget, text_keep, device, xy.dtype)
        tokens = torch.zeros(batch, prompt_len + budget, dtype=torch.long, device=device)
        if prompt is not None:
            tokens[:, :prompt_len] = prompt
        filled = prompt_len
        rows = list(range(batch))  # original row of each current batch row
        row_generators = None if generator is None or isinstance(generator, torch.Generator) else list(generator)
        if row_generators is not None and len(row_generators) != batch:
            raise S1InputError(f"{len(row_generators)} generators for {batch} sequences")
        outcomes: list[Optional[_RowOutcome]] = [None] * batch

        for step in range(max_steps):
            if step:
                raw = session.step(tokens[:, filled - 1 : filled], prompt_len + step - 1)
            else:
                raw = session.prefill(xy)
            if trace is not None:
                trace.append((list(rows), raw.detach().clone()))
            if logits_hook is not None:
                raw = logits_hook(step, list(rows), raw.float())
            eos_allowed = step >= EOS_BLOCKED_STEPS
            # sampling in float32 whatever the model's dtype (upstream samples from its logits' dtype; fp16/bf16
            # logits would round the penalty, top-p cumsum and softmax): the touchy step of decoding
            logits = (raw if eos_allowed else raw[:, :-1]).float()
            penalised = apply_repetition_penalty(logits, tokens[:, :filled], params.repetition_penalty)
            probs = filtered_probs(penalised, params.temperature, params.top_k, params.top_p)
            chosen = sample_from_probs(probs, row_generators if row_generators is not None else generator)
            tokens[:, filled] = chosen
            filled += 1
            if token_hook is not None:  # streaming: every row's newest token (EOS included) as soon as it exists
                token_hook(step, list(rows), chosen)

            if eos_allowed:
                # upstream tests argmax on the logits its sampler penalised in place, hence `penalised` here
                ended = (chosen == cfg.eos) | (penalised.argmax(dim=-1) == cfg.eos)
                if bool(ended.any()):
                    flags = ended.tolist()
                    for j, done in enumerate(flags):
                        if done:
                            outcomes[rows[j]] = _RowOutcome(tokens[j, prompt_len:filled].clone(), step, True)
                    keep = [j for j, done in enumerate(flags) if not done]
                    if not keep:
                        break
                    keep_index = torch.tensor(keep, device=device)
                    tokens = tokens.index_select(0, keep_index)
                    session.keep_rows(keep_index)
                    rows = [rows[j] for j in keep]
                    if row_generators is not None:
                        row_generators = [row_generators[j] for j in keep]

            if (early_stop_num != -1 and filled - prompt_len > early_stop_num) or step == max_steps - 1:
                for j, row in enumerate(rows):
                    outcomes[row] = _RowOutcome(tokens[j, prompt_len:filled].clone(), step, False)
                break
        return outcomes  # type: ignore[return-value]

    @torch.no_grad()
    def infer_naive(
        self,
        phones: torch.Tensor,
        bert: torch.Tensor,
        prompt: Optional[torch.Tensor],
        params: SamplingParams = SamplingParams(),
        early_stop_num: int = -1,
        generator: Generators = None,
        max_steps: int = MAX_DECODE_STEPS,
        trace: Optional[list] = None,
        logits_hook: Optional[LogitsHook] = None,
    ) -> tuple[torch.Tensor, int]:
        """One sequence, upstream ``infer_panel``'s return convention: ``(y (1, L), idx)``.

        ``phones`` (T,) or (1, T), ``bert`` (1024, T) or (1, 1024, T), ``prompt`` (Tp,) / (1, Tp) or None.
        ``y`` is prompt + generated tokens, without the final token only if it stopped on EOS; ``idx`` is the step
        at which it stopped (0 without a prompt). Callers keep ``y[0, -idx:]`` (the whole y when idx is 0), which
        after an ``early_stop_num`` stop drops the first generated token: that is upstream's behaviour.
        ``trace``, if given, receives ``(rows, raw_logits)`` per step.
        """
        phones = phones[0] if phones.dim() == 2 else phones
        bert = bert[0] if bert.dim() == 3 else bert
        phones, bert = self._check_item(phones, bert)
        prompt_rows = self._prompt_rows(prompt, 1)
        text = self.embed_text(phones[None], bert[None])
        outcome = self._decode(text, None, prompt_rows, params, early_stop_num, generator, max_steps, trace,
                               logits_hook)[0]
        generated = outcome.generated[:-1] if outcome.hit_eos else outcome.generated
        y = generated if prompt_rows is None else torch.cat([prompt_rows[0], generated])
        if y.numel() == 0:
            y = y.new_zeros(1)  # upstream's "bad zero prediction" fallback
        return y[None], (0 if prompt_rows is None else outcome.stop_step)

    @torch.no_grad()
    def infer_batch(
        self,
        phones_list: Sequence[torch.Tensor],
        bert_list: Sequence[torch.Tensor],
        prompt: Optional[torch.Tensor],
        params: SamplingParams = SamplingParams(),
        early_stop_num: int = -1,
        max_len: Optional[int] = None,
        generator: Generators = None,
        max_steps: int = MAX_DECODE_STEPS,
        trace: Optional[list] = None,
        logits_hook: Optional[LogitsHook] = None,
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Several sequences decoded together; upstream ``infer_panel_batch_infer``'s ``(y_list, idx_list)``.

        Each item's text is embedded on its own (positions from 0) and left-padded with zeros to
        ``max(max_len, longest)``; the prompt (Tp,) or (B, Tp) is shared. ``y_list[i]`` is prompt + generated
        tokens minus the last one *whatever* stopped the row; ``idx_list[i]`` its stop step. Without a prompt every
        item goes through :meth:`infer_naive` (upstream falls back the same way), giving ``(y[0], 0)`` per item.
        """
        if len(phones_list) == 0 or len(phones_list) != len(bert_list):
            raise S1InputError(f"got {len(phones_list)} phone sequences but {len(bert_list)} BERT features")
        if prompt is None:
            gens = _per_item(generator, len(phones_list))
            results = [self.infer_naive(p, b, None, params, early_stop_num, g, max_steps, trace,
                                        _shift_hook(logits_hook, i))
                       for i, (p, b, g) in enumerate(zip(phones_list, bert_list, gens))]
            return [y[0] for y, _ in results], [idx for _, idx in results]

        prompt_rows = self._prompt_rows(prompt, len(phones_list))
        outcomes = self._batch_outcomes(phones_list, bert_list, prompt_rows, params, early_stop_num, max_len,
                                        generator, max_steps, trace, logits_hook)
        y_list = [torch.cat([prompt_rows[i], o.generated])[:-1] for i, o in enumerate(outcomes)]
        return y_list, [o.stop_step for o in outcomes]

    def _batch_outcomes(self, phones_list, bert_list, prompt_rows, params, early_stop_num, max_len, generator,
                        max_steps, trace, logits_hook, token_hook=None) -> list[_RowOutcome]:
        """Left-pad every item's embedded text to a common width and decode all rows together."""
        items = [self._check_item(p, b) for p, b in zip(phones_list, bert_list)]
        width = max([max_len or 0] + [p.shape[0] for p, _ in items])
        texts = [self.embed_text(p[None], b[None])[0] for p, b in items]
        text = torch.stack([F.pad(t, (0, 0, width - t.shape[0], 0)) for t in texts])
        text_keep = None
        if any(t.shape[0] != width for t in texts):
            lengths = torch.tensor([t.shape[0] for t in texts], device=text.device)
            text_keep = torch.arange(width, device=text.device)[None, :] >= (width - lengths)[:, None]
        return self._decode(text, text_keep, prompt_rows, params, early_stop_num, generator, max_steps, trace,
                            logits_hook, token_hook)

    @torch.no_grad()
    def generate(
        self,
        phones_list: Sequence[torch.Tensor],
        bert_list: Sequence[torch.Tensor],
        prompt: Optional[torch.Tensor] = None,
        params: SamplingParams = SamplingParams(),
        early_stop_num: Optional[int] = None,
        generator: Generators = None,
        parallel: bool = True,
        max_steps: int = MAX_DECODE_STEPS,
        logits_hook: Optional[LogitsHook] = None,
        token_hook: Optional["TokenHook"] = None,
    ) -> list[torch.Tensor]:
        """Semantic tokens for each item, exactly the ones upstream's TTS.py hands to SoVITS.

        ``phones_list[i]`` (T_i,) ids of prompt text + target text, ``bert_list[i]`` (1024, T_i), ``prompt`` the
        reference's semantic tokens (Tp,) or None (reference-free). ``early_stop_num`` defaults to the checkpoint's
        ``50 * max_sec``. ``parallel`` selects TTS.py's batched decoder (its default); otherwise items are decoded
        one by one as with parallel inference off. ``generator`` makes sampling reproducible: one generator is
        shared by the items of the call; a list gives each item its own stream, so an item's tokens do not depend
        on what it is batched with. ``logits_hook(step, rows, logits)`` may rewrite raw logits (rows are indices
        into ``phones_list``). ``token_hook(step, rows, tokens)`` sees every sampled token as soon as it is drawn
        (``tokens`` (len(rows),) long on the model's device, EOS included; a row's last call is the step it stopped
        at): the hook token-level streaming builds on.
        """
        if early_stop_num is None:
            early_stop_num = self.config.early_stop_num
        if len(phones_list) == 0 or len(phones_list) != len(bert_list):
            raise S1InputError(f"got {len(phones_list)} phone sequences but {len(bert_list)} BERT features")
        # Unlike infer_naive / infer_batch (which keep upstream's return conventions for parity), every path here
        # returns exactly the tokens generated before EOS, or all of them when a limit stopped the row: upstream
        # drops the first token on an early stop in its naive path and the last one in its batched path.
        if parallel and prompt is not None:
            prompt_rows = self._prompt_rows(prompt, len(phones_list))
            outcomes = self._batch_outcomes(phones_list, bert_list, prompt_rows, params, early_stop_num, None,
                                            generator, max_steps, None, logits_hook, token_hook)
        else:
            per_row = prompt is not None and prompt.dim() == 2 and prompt.shape[0] > 1
            gens = _per_item(generator, len(phones_list))
            outcomes = []
            for i, (phones, bert) in enumerate(zip(phones_list, bert_list)):
                item_prompt = None if prompt is None else (prompt[i] if per_row else prompt)
                rows = self._prompt_rows(item_prompt, 1)
                outcomes += self._batch_outcomes([phones], [bert], rows, params, early_stop_num, None, gens[i],
                                                 max_steps, None, _shift_hook(logits_hook, i),
                                                 _shift_hook(token_hook, i))
        tokens = [o.generated[:-1] if o.hit_eos else o.generated for o in outcomes]
        return [t if t.numel() else t.new_zeros(1) for t in tokens]  # upstream's "bad zero prediction" fallback

def fixed_length_hook(counts: Sequence[int], eos: int) -> LogitsHook:
    """A logits hook making row i emit exactly ``counts[i]`` tokens, then EOS.

    This is the shared benchmark workload's rule (EOS impossible before the count, the only choice at it), so two
    implementations do identical work whatever their random weights predict."""

    def hook(step: int, rows: list, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        for j, row in enumerate(rows):
            if step < counts[row]:
                logits[j, eos] = float("-inf")
            else:
                logits[j] = float("-inf")
                logits[j, eos] = 0.0
        return logits

    return hook


def _per_item(generator: Generators, count: int) -> list:
    """The generator each of ``count`` items decoded one by one should use."""
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * count
    if len(generator) != count:
        raise S1InputError(f"{len(generator)} generators for {count} sequences")
    return list(generator)


def _shift_hook(hook, item: int):
    """A logits or token hook for item ``item`` decoded alone: report its original index instead of row 0."""
    if hook is None:
        return None
    return lambda step, rows, values: hook(step, [item for _ in rows], values)
