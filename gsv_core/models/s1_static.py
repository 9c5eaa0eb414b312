"""Static-KV-cache decoding for the s1 GPT: a drop-in :class:`~gsv_core.models.s1.Text2Semantic` variant.

The plain model decodes through ``nn.Module`` calls on a cache that grows and shrinks with the batch. This variant
keeps the same weights, the same decoding rules (``Text2Semantic._decode``: sampling, EOS, limits, hooks) and the
same prefill, and replaces only the per-token step (:class:`StaticDecodeSession`):

* the keys/values of every layer live in one preallocated tensor (layers, batch, heads, capacity, head_dim) whose
  capacity is a whole number of :data:`BUCKET` positions;
* the step is one flat function over the weights (no module calls, no mask or position tensors built per layer),
  the position encoding of every audio position is precomputed once per model (the same float32 operations as the
  plain path, so the same values);
* ``mode="sliced"`` (the CPU default) attends to the filled part of the cache only, exactly the keys and values the
  plain path attends to, and drops finished rows from the cache as the plain path does;
* ``mode="fixed"`` gives every step of a length bucket the same shapes and buffer addresses: the step reads its
  token, cache position and audio position from tensors, writes keys/values with ``index_copy_`` at that position
  and attends to the whole bucket under a mask (positions not yet written hold zeros and are masked out); finished
  rows stay in the batch (their outputs are ignored, live rows are unaffected: attention, LayerNorm and the
  projections are per row). That is the step CUDA captures as a graph, one per (batch size, bucket), replayed for
  every token. On the CPU the same step runs eagerly, which is how the tests check the captured computation.

CUDA graphs: captured with ``torch.cuda.CUDAGraph`` directly rather than ``torch.compile(mode="reduce-overhead")``:
the graph replays exactly the eager kernels of the fixed step, so its tokens and logits equal the eager fixed step's
(the load-time check compares them), it needs no compiler toolchain (Triton) nor minutes of compilation per bucket,
and bucketing is ours (no recompilation guards on the growing cache length). Capture is tried when the variant is
built (:meth:`StaticCacheText2Semantic.verify_graphs`); if capturing fails or the first greedy tokens differ from
the eager fixed step, the variant decodes eagerly and says so in one log line. Sampling stays outside the graph
(its per-row generators and top-k/top-p run eagerly, in float32).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .s1 import INITIAL_DECODE_CAPACITY, FusedSelfAttention, Text2Semantic, sinusoid

log = logging.getLogger("gsv.s1.static")

#: cache capacity grows in whole buckets of this many positions (one CUDA graph per bucket and batch size)
BUCKET = 256
#: greedy steps the load-time check decodes with and without graphs
CHECK_STEPS = 16
#: fixed-mode buffer sets (one per batch size, with their graphs) kept between calls; each holds the whole cache of
#: its batch (fp16, 24 layers, 2048 positions: ~100 MB per row), so only the most recent sizes stay
BUFFER_SETS = 2


def bucket_capacity(positions: int) -> int:
    """The smallest whole number of buckets holding ``positions`` cache positions."""
    return max(1, -(-int(positions) // BUCKET)) * BUCKET


def _projection(module: nn.Module, weight: str = "weight", bias: str = "bias") -> Callable[[torch.Tensor], torch.Tensor]:
    """A plain callable for one projection: ``F.linear`` on the module's own tensors for ``nn.Linear`` (no module
    call overhead; the same kernel the module would run), the module itself for any other variant (int8...)."""
    if isinstance(module, nn.Linear):
        w, b = module.weight, module.bias
        return lambda x: F.linear(x, w, b)
    return module


def _qkv_projection(attn: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stacked q/k/v projection of an attention module: ``F.linear`` for the plain one, the variant's own
    ``project_qkv`` otherwise (int8...)."""
    if type(attn).project_qkv is FusedSelfAttention.project_qkv:
        w, b = attn.in_proj_weight, attn.in_proj_bias
        return lambda x: F.linear(x, w, b)
    return attn.project_qkv


@dataclass
class _Layer:
    qkv: Callable
    out: Callable
    up: Callable
    down: Callable
    norm1: tuple
    norm2: tuple


class _CacheWriter:
    """What ``LayerStack`` needs from a cache during the (eager, variable-length) prefill: ``write`` stores a
    layer's keys/values at the current length and returns everything so far; ``advance`` moves the length."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int = 0):
        self.keys, self.values, self.length = keys, values, length

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.length + k.shape[2]
        self.keys[layer, : k.shape[0], :, self.length : end] = k
        self.values[layer, : k.shape[0], :, self.length : end] = v
        return self.keys[layer, : k.shape[0], :, :end], self.values[layer, : k.shape[0], :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps


class _FixedBuffers:
    """Everything a fixed-shape step reads or writes, at fixed addresses: shared by the calls of one batch size so
    that graphs captured on them stay valid from one sentence to the next."""

    def __init__(self, model: "StaticCacheText2Semantic", batch: int, capacity: int, device, dtype):
        cfg = model.config
        shape = (cfg.num_layers, batch, cfg.num_heads, capacity, cfg.head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.key_keep = torch.ones(batch, capacity, device=device, dtype=torch.bool)
        self.positions = torch.arange(capacity, device=device)
        self.token = torch.zeros(batch, device=device, dtype=torch.long)
        self.pos = torch.zeros((), device=device, dtype=torch.long)  # cache position written by the step
        self.apos = torch.zeros((), device=device, dtype=torch.long)  # audio position of the step's token
        self.logits = torch.zeros(batch, cfg.vocab_size, device=device, dtype=dtype)
        self.batch, self.capacity, self.device, self.dtype = batch, capacity, torch.device(device), dtype
        self.graphs: dict[int, object] = {}  # bucket capacity -> captured CUDA graph


class StaticDecodeSession:
    """One decoding call on the static cache (see the module docstring for the two modes)."""

    def __init__(self, model: "StaticCacheText2Semantic", batch: int, text_len: int, prompt_len: int, budget: int,
                 text_keep: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype, mode: str):
        self.model, self.mode = model, mode
        self.batch, self.text_len, self.prompt_len, self.text_keep = batch, text_len, prompt_len, text_keep
        self.device, self.dtype = torch.device(device), dtype
        seq_len = text_len + prompt_len
        self.capacity = bucket_capacity(seq_len + min(budget, INITIAL_DECODE_CAPACITY))
        self.alive: Optional[torch.Tensor] = None  # fixed mode: rows still decoding (None = all)
        cfg = model.config
        if mode == "fixed":
            self.bufs = model.fixed_buffers(batch, bucket_capacity(seq_len + budget), device, dtype)
            b = self.bufs
            b.keys[:, :, :, : self.capacity].zero_()  # nothing of an earlier call may leak in, even masked
            b.values[:, :, :, : self.capacity].zero_()
            b.key_keep.fill_(True)
            if text_keep is not None:
                b.key_keep[:, :text_len] = text_keep
            self.writer = _CacheWriter(b.keys, b.values)
        else:
            shape = (cfg.num_layers, batch, cfg.num_heads, self.capacity, cfg.head_dim)
            self.writer = _CacheWriter(torch.empty(shape, device=device, dtype=dtype),
                                       torch.empty(shape, device=device, dtype=dtype))
            self.key_keep = None if text_keep is None else F.pad(text_keep, (0, prompt_len + budget), value=True)

    # -- the session interface of Text2Semantic._decode -----------------------------------------------------------

    def prefill(self, xy: torch.Tensor) -> torch.Tensor:
        m = self.model
        mask = m.prefill_mask(self.text_len, self.prompt_len, self.text_keep, xy.device)
        return m.ar_predict_layer(m.h(xy, mask, self.writer)[:, -1])

    def step(self, tokens: torch.Tensor, audio_position: int) -> torch.Tensor:
        if self.mode == "fixed":
            return self._fixed(tokens[:, 0], audio_position)
        return self._sliced(tokens[:, 0], audio_position)

    def keep_rows(self, index: torch.Tensor) -> None:
        if self.mode == "fixed":
            self.alive = index if self.alive is None else self.alive.index_select(0, index)
            return
        w = self.writer
        for name in ("keys", "values"):
            old = getattr(w, name)
            shape = list(old.shape)
            shape[1] = index.numel()
            new = old.new_empty(shape)
            new[:, :, :, : w.length] = old[:, :, :, : w.length].index_select(1, index)
            setattr(w, name, new)
        if self.key_keep is not None:
            self.key_keep = self.key_keep.index_select(0, index)

    # -- sliced mode (CPU default) -------------------------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        w = self.writer
        capacity = bucket_capacity(max(needed, self.capacity + BUCKET))
        for name in ("keys", "values"):
            old = getattr(w, name)
            shape = list(old.shape)
            shape[3] = capacity
            new = old.new_empty(shape)
            new[:, :, :, : w.length] = old[:, :, :, : w.length]
            setattr(w, name, new)
        self.capacity = capacity

    def _sliced(self, token: torch.Tensor, audio_position: int) -> torch.Tensor:
        m, w = self.model, self.writer
        pos = w.length
        end = pos + 1
        if end > self.capacity:
            self._grow(end)
        x = F.embedding(token, m.audio_embedding_weight) + m.position_table(audio_position + 1, self.device,
                                                                          self.dtype)[audio_position]
        mask = None if self.key_keep is None else self.key_keep[:, None, None, :end]
        batch = token.shape[0]
        heads, head_dim, dim = m.config.num_heads, m.config.head_dim, m.config.hidden_dim
        keys, values = w.keys, w.values
        for index, layer in enumerate(m.fast_layers()):
            q, k, v = layer.qkv(x).view(batch, 3, heads, head_dim).unbind(1)
            keys[index, :, :, pos] = k
            values[index, :, :, pos] = v
            attn = F.scaled_dot_product_attention(q.unsqueeze(2), keys[index, :, :, :end], values[index, :, :, :end],
                                                  attn_mask=mask)
            x = F.layer_norm(x + layer.out(attn.reshape(batch, dim)), *layer.norm1)
            x = F.layer_norm(x + layer.down(F.relu(layer.up(x))), *layer.norm2)
        w.length = end
        return m.ar_predict_layer(x)

    # -- fixed mode (what CUDA graphs capture) -------------------------------------------------------------------

    def _fixed(self, token: torch.Tensor, audio_position: int) -> torch.Tensor:
        m, b = self.model, self.bufs
        pos = self.text_len + audio_position
        if pos + 1 > self.capacity:
            self.capacity = bucket_capacity(pos + 1)
            if self.capacity > b.capacity:  # cannot happen within the budget the buffers were sized for
                raise RuntimeError(f"static GPT cache of {b.capacity} positions is too small for position {pos}")
            b.keys[:, :, :, self.writer.length : self.capacity].zero_()
            b.values[:, :, :, self.writer.length : self.capacity].zero_()
        if self.alive is None:
            b.token.copy_(token)
        else:
            b.token.index_copy_(0, self.alive, token)
        b.pos.fill_(pos)
        b.apos.fill_(audio_position)
        m.run_fixed_step(b, self.capacity)
        self.writer.length = pos + 1
        # a copy: the next step (or replay) overwrites the buffer while the caller may still hold these logits
        return b.logits.clone() if self.alive is None else b.logits.index_select(0, self.alive)


class StaticCacheText2Semantic(Text2Semantic):
    """The GPT with the static-cache decoding step; same weights (shared with the model it is built from), same
    ``generate`` / ``infer_naive`` / ``infer_batch`` / ``forward``. Inference only.

    ``mode``: "sliced" (eager, CPU default) or "fixed" (fixed shapes per bucket, CUDA-graph capturable; the default
    on CUDA). ``graphs``: capture the fixed step as CUDA graphs (CUDA only; ignored elsewhere).
    """

    def __init__(self, base: Text2Semantic, mode: Optional[str] = None, graphs: bool = True,
                 backend: str = "torch"):
        nn.Module.__init__(self)
        self.config = base.config
        for name, child in base.named_children():
            setattr(self, name, child)
        for attr in ("quantized",):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))
        self.train(base.training)
        device = self.bert_proj.weight.device
        if mode is None:
            mode = "fixed" if device.type == "cuda" else "sliced"
        if mode not in ("sliced", "fixed"):
            raise ValueError(f"static-cache mode must be 'sliced' or 'fixed', not {mode!r}")
        self.mode = mode
        self.graphs = bool(graphs) and mode == "fixed" and device.type == "cuda" and torch.cuda.is_available()
        self.graph_note: Optional[str] = None  # why graphs are off, when they were asked for
        self._layers: Optional[list[_Layer]] = None
        self._table: Optional[tuple] = None
        self._buffers: dict[int, _FixedBuffers] = {}
        self._pool = None
        self._lock = threading.RLock()  # fixed mode shares its buffers between calls: one decode at a time
        if backend not in ("torch", "onnx", "onnx-int8"):
            raise ValueError(f"static-cache backend must be 'torch', 'onnx' or 'onnx-int8', not {backend!r}")
        self.backend = backend
        self._onnx = None

    @classmethod
    def from_plain(cls, model: Text2Semantic, mode: Optional[str] = None, graphs: bool = True,
                   backend: str = "torch"):
        return cls(model, mode=mode, graphs=graphs, backend=backend).eval()

    # -- pieces of the step ----------------------------------------------------------------------------------------

    @property
    def audio_embedding_weight(self) -> torch.Tensor:
        return self.ar_audio_embedding.word_embeddings.weight

    def fast_layers(self) -> list[_Layer]:
        if self._layers is None:
            layers = []
            for layer in self.h.layers:
                attn = layer.self_attn
                layers.append(_Layer(_qkv_projection(attn), _projection(attn.out_proj), _projection(layer.linear1),
                                     _projection(layer.linear2),
                                     ((layer.norm1.normalized_shape), layer.norm1.weight, layer.norm1.bias,
                                      layer.norm1.eps),
                                     ((layer.norm2.normalized_shape), layer.norm2.weight, layer.norm2.bias,
                                      layer.norm2.eps)))
            self._layers = layers
        return self._layers

    def position_table(self, rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``alpha * PE[p]`` of the audio positions 0..rows-1 and beyond (at least ``rows``), in the model's dtype:
        the values the plain path computes per step (``ScaledSinusoid``), computed once."""
        alpha = self.ar_audio_position.alpha
        key = (alpha.data_ptr(), alpha._version, str(device), dtype)
        if self._table is None or self._table[0] != key or self._table[1].shape[0] < rows:
            size = bucket_capacity(max(rows, 2 * BUCKET if self._table is None else self._table[1].shape[0] * 2))
            pe = sinusoid(0, size, self.config.embedding_dim, device).to(dtype)
            self._table = (key, (alpha * pe).detach())
        return self._table[1]

    def fixed_buffers(self, batch: int, capacity: int, device, dtype) -> _FixedBuffers:
        """The buffer set (and its graphs) of this batch size; the last :data:`BUFFER_SETS` sizes are kept."""
        bufs = self._buffers.pop(batch, None)
        if bufs is None or bufs.capacity < capacity or bufs.dtype != dtype or bufs.device != torch.device(device):
            bufs = _FixedBuffers(self, batch, bucket_capacity(capacity), device, dtype)  # older graphs go with it
        self._buffers[batch] = bufs  # most recently used last
        while len(self._buffers) > BUFFER_SETS:
            self._buffers.pop(next(iter(self._buffers)))
        self.position_table(bufs.capacity, device, dtype)
        return bufs

    def fixed_step(self, b: _FixedBuffers, capacity: int) -> None:
        """One decoding step with fixed shapes: reads ``b.token``/``b.pos``/``b.apos``, writes the cache at ``pos``
        and ``b.logits``. Everything it touches has a fixed address, so it can be captured as a CUDA graph."""
        cfg = self.config
        batch, heads, head_dim, dim = b.batch, cfg.num_heads, cfg.head_dim, cfg.hidden_dim
        table = self._table[1]
        x = F.embedding(b.token, self.audio_embedding_weight) + table.index_select(0, b.apos.view(1))
        mask = (b.key_keep[:, :capacity] & (b.positions[:capacity] <= b.pos))[:, None, None, :]
        where = b.pos.view(1)
        for index, layer in enumerate(self.fast_layers()):
            q, k, v = layer.qkv(x).view(batch, 3, heads, head_dim).unbind(1)
            keys = b.keys[index, :, :, :capacity]
            values = b.values[index, :, :, :capacity]
            keys.index_copy_(2, where, k.unsqueeze(2))
            values.index_copy_(2, where, v.unsqueeze(2))
            attn = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, attn_mask=mask)
            x = F.layer_norm(x + layer.out(attn.reshape(batch, dim)), *layer.norm1)
            x = F.layer_norm(x + layer.down(F.relu(layer.up(x))), *layer.norm2)
        b.logits.copy_(self.ar_predict_layer(x))

    def run_fixed_step(self, b: _FixedBuffers, capacity: int) -> None:
        if not self.graphs:
            self.fixed_step(b, capacity)
            return
        graph = b.graphs.get(capacity)
        if graph is None:
            try:
                graph = self._capture(b, capacity)
            except Exception as exc:  # noqa: BLE001 - any capture failure means: decode eagerly
                self.disable_graphs(f"capturing the decoding step failed ({type(exc).__name__}: {exc})")
                self.fixed_step(b, capacity)
                return
            b.graphs[capacity] = graph
        graph.replay()

    def _capture(self, b: _FixedBuffers, capacity: int):
        """Capture :meth:`fixed_step` for this buffer set and bucket. The warm-up runs (on a side stream, as
        capture requires) write the same keys/values at the same position as the replay that follows, so they
        change nothing."""
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device=b.device)
        side.wait_stream(torch.cuda.current_stream(b.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.fixed_step(b, capacity)
        torch.cuda.current_stream(b.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self.fixed_step(b, capacity)
        return graph

    def disable_graphs(self, reason: str) -> None:
        if self.graphs:
            log.warning("CUDA graphs off for this GPT (%s): decoding with the eager static-cache step", reason)
        self.graphs = False
        self.graph_note = reason
        for bufs in self._buffers.values():
            bufs.graphs.clear()

    # -- decoding ----------------------------------------------------------------------------------------------

    def decode_session(self, batch, text_len, prompt_len, budget, text_keep, device, dtype):
        if self.backend.startswith("onnx") and torch.device(device).type == "cpu" and dtype == torch.float32:
            from .s1_onnx import GROWTH, OnnxDecodeSession

            capacity = -(-(text_len + prompt_len + min(budget, GROWTH)) // GROWTH) * GROWTH
            return OnnxDecodeSession(self, self.onnx_step(), batch, text_len, prompt_len, budget, text_keep, device,
                                     dtype, capacity)
        return StaticDecodeSession(self, batch, text_len, prompt_len, budget, text_keep, device, dtype, self.mode)

    @property
    def extra_bytes(self) -> int:
        """Memory this variant holds outside its parameters and buffers (for a registry's budget): the onnxruntime
        session's weights (measured: two copies of the fp32 projections, or about one int8 copy) and the fixed-mode
        cache buffers."""
        total = sum(b.keys.numel() * b.keys.element_size() * 2 for b in self._buffers.values())
        if self._onnx is not None:
            projections = sum(p.numel() for layer in self.h.layers for p in layer.parameters() if p.dim() == 2)
            projections += self.ar_predict_layer.weight.numel()
            total += projections * (2 if self.backend == "onnx-int8" else 8)
        return total

    def onnx_step(self):
        """The onnxruntime session of this model's step (built on first use; ~1 s for the official model)."""
        with self._lock:
            if self._onnx is None:
                from .s1_onnx import OnnxStep

                self._onnx = OnnxStep(self, int8=self.backend == "onnx-int8")
                if self.backend == "onnx-int8":
                    self.quantized = "int8-onnx"
            return self._onnx

    def _decode(self, *args, **kwargs):
        with (self._lock if self.mode == "fixed" else contextlib.nullcontext()):
            return super()._decode(*args, **kwargs)

    @torch.no_grad()
    def verify_graphs(self) -> bool:
        """The load-time check: decode :data:`CHECK_STEPS` greedy tokens of a small dummy input with graphs and
        with the eager fixed step; graphs stay on only if capture works and the tokens are equal. Returns whether
        graphs are on."""
        if not self.graphs:
            return False
        from .sampling import SamplingParams

        device = self.bert_proj.weight.device
        gen = torch.Generator(device="cpu").manual_seed(0)
        phones = torch.randint(0, self.config.phoneme_vocab_size, (8,), generator=gen, device=gen.device).to(device)
        bert = torch.zeros(1024, 8, device=device, dtype=self.bert_proj.weight.dtype)
        prompt = torch.randint(0, self.config.vocab_size - 1, (4,), generator=gen, device=gen.device).to(device)
        greedy = SamplingParams(top_k=1)
        try:
            with torch.inference_mode():
                graphed = self.generate([phones], [bert], prompt, greedy, early_stop_num=CHECK_STEPS - 1)[0]
            if not self.graphs:  # capture failed inside and already said so
                return False
            self.graphs = False
            with torch.inference_mode():
                eager = self.generate([phones], [bert], prompt, greedy, early_stop_num=CHECK_STEPS - 1)[0]
            self.graphs = True
        except Exception as exc:  # noqa: BLE001
            self.graphs = True
            self.disable_graphs(f"the load-time check failed ({type(exc).__name__}: {exc})")
            return False
        if not torch.equal(graphed.cpu(), eager.cpu()):
            self.disable_graphs("its first greedy tokens differ from the eager step's")
            return False
        return True


def static_variant(model: Text2Semantic, mode: Optional[str] = None, graphs: bool = True) -> StaticCacheText2Semantic:
    """``model`` as the static-cache variant (sharing its weights); on CUDA the graphs are checked here."""
    variant = StaticCacheText2Semantic.from_plain(model, mode=mode, graphs=graphs)
    if variant.graphs:
        variant.verify_graphs()
    return variant


__all__ = ["BUCKET", "StaticCacheText2Semantic", "StaticDecodeSession", "bucket_capacity", "static_variant"]
