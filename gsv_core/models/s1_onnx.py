"""The GPT's decoding step on onnxruntime (CPU, fp32): a backend of the static-cache variant.

Why: on CPUs where torch's fp32 matrix-vector products (MKL ``sgemm`` with one to a few rows) stay far from the
memory bandwidth, onnxruntime's MLAS kernels stream the same fp32 weights about twice as fast for one row and four
times as fast for five (bench/bench_gpt_kernels.py). Decoding one token is exactly that product, 97 times per step.

What runs where: the prefill (many rows: torch's kernels are good there), sampling (float32, per-row generators) and
the decoding rules stay in torch (``Text2Semantic._decode``); one ``InferenceSession.run_with_iobinding`` per token
computes everything between the embedded token and the logits, for all 24 layers, reading the keys/values the
prefill and earlier steps stored in torch tensors (bound by address, never copied) and returning the new token's
keys/values, which torch writes into the cache. The arithmetic is the plain step's (same operations in fp32, other
summation order): logits agree to ~1e-6 relative, greedy tokens equal on the fixtures (tests/test_static_cache.py).

Cache layout for this backend: keys transposed, ``(layers, batch, heads, head_dim, capacity)``, values
``(layers, batch, heads, capacity, head_dim)``, so that one layer's slice is a dense ``q @ K`` / ``p @ V`` operand;
the capacity grows in steps of :data:`GROWTH` positions, positions beyond the filled ones are masked with ``-inf``
(the new token's own key is scored separately and joined in the softmax), finished rows stay in the batch as in
the fixed mode. The graph is built with the ``onnx`` package; without ``onnx`` or ``onnxruntime`` the variant decodes with the
torch step instead (:func:`onnx_available`).
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("gsv.s1.onnx")

#: the cache grows in steps of this many positions: the step attends to the whole allocated capacity (masked), so a
#: small step keeps the keys/values it reads close to the filled ones (there are no graphs to re-capture here)
GROWTH = 64


def _grown(needed: int) -> int:
    return -(-int(needed) // GROWTH) * GROWTH

_AVAILABLE: Optional[bool] = None


def onnx_available() -> bool:
    """Whether ``onnx`` (to build the graph) and ``onnxruntime`` (to run it) can be imported."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            _AVAILABLE = True
        except ImportError:
            _AVAILABLE = False
    return _AVAILABLE


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()


#: int8 weights are rounded to 7 bits (-63..63): AVX2's u8 x s8 multiply-add (vpmaddubsw) sums pairs into int16,
#: which 8-bit weights times 8-bit activations can overflow; 7 bits cannot (fbgemm makes the same trade on the
#: activation side with its reduce_range)
INT8_WEIGHT_LEVELS = 63


def build_step_graph(model, int8: bool = False) -> bytes:
    """The serialised ONNX model of one decoding step of ``model`` (a plain fp32 ``Text2Semantic``).

    Inputs: ``x`` (B, D) embedded token; ``bias`` (B, 1, 1, C) 0 / -inf per cache position; ``k{l}`` (B, H, Dh, C)
    and ``v{l}`` (B, H, C, Dh) per layer. Outputs: ``logits`` (B, V); ``k_new`` / ``v_new`` (L, B, H, Dh).

    ``int8``: the projections (q/k/v, out, FFN, output layer) as int8 weights with one scale per output column,
    activations quantised per call to uint8 (``DynamicQuantizeLinear``: one scale for the call's rows) and
    multiplied in integers (``MatMulInteger``), then rescaled to fp32 (the GPT_INT8 path of AVX2 CPUs)."""
    from onnx import TensorProto, helper, numpy_helper

    cfg = model.config
    dim, heads, head_dim, layers = cfg.hidden_dim, cfg.num_heads, cfg.head_dim, cfg.num_layers
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list, output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(x: str, weight: torch.Tensor, bias: Optional[torch.Tensor], name: str) -> str:
        w_t = _np(weight).T.copy()  # (in, out)
        if not int8:
            y = node("MatMul", [x, const(name + ".wT", w_t)], name + ".mm")
        else:
            scales = np.maximum(np.abs(w_t).max(axis=0) / INT8_WEIGHT_LEVELS, 1e-12).astype(np.float32)
            q = np.clip(np.round(w_t / scales), -INT8_WEIGHT_LEVELS, INT8_WEIGHT_LEVELS).astype(np.int8)
            nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [name + ".xq", name + ".xs", name + ".xz"]))
            acc = node("MatMulInteger", [name + ".xq", const(name + ".wq", q), name + ".xz",
                                         const(name + ".wz", np.zeros(q.shape[1], np.int8))], name + ".acc")
            rescale = node("Mul", [name + ".xs", const(name + ".ws", scales)], name + ".sc")
            y = node("Mul", [node("Cast", [acc], name + ".accf", to=TensorProto.FLOAT), rescale], name + ".mm")
        return node("Add", [y, const(name + ".b", _np(bias))], name + ".out") if bias is not None else y

    shape_bhd = const("shape_bh1d", np.array([-1, heads, 1, head_dim], np.int64))
    shape_bd = const("shape_bd", np.array([-1, dim], np.int64))
    shape_bh_d = const("shape_bhd", np.array([-1, heads, head_dim], np.int64))
    axis_last = const("axis_last", np.array([-1], np.int64))
    axis0 = const("axis0", np.array([0], np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    bounds = {i: const(f"at{i}", np.array([i * dim], np.int64)) for i in range(4)}
    big = const("big", np.array([2**62], np.int64))

    x = "x"
    k_out, v_out = [], []
    for index, layer in enumerate(model.h.layers):
        p = f"l{index}"
        attn = layer.self_attn
        qkv = linear(x, attn.in_proj_weight, attn.in_proj_bias, p + ".qkv")
        parts = {}
        for j, name in enumerate("qkv"):
            sl = node("Slice", [qkv, bounds[j], bounds[j + 1], axis_last], f"{p}.{name}2d")
            parts[name] = node("Reshape", [sl, shape_bhd], f"{p}.{name}")  # (B, H, 1, Dh)
        q = node("Mul", [parts["q"], scale], p + ".qs")
        cached = node("MatMul", [q, f"k{index}"], p + ".sc")  # (B, H, 1, C)
        cached = node("Add", [cached, "bias"], p + ".scm")
        own = node("ReduceSum", [node("Mul", [q, parts["k"]], p + ".qk"), axis_last], p + ".so", keepdims=1)
        probs = node("Softmax", [node("Concat", [cached, own], p + ".sall", axis=-1)], p + ".p", axis=-1)
        p_cached = node("Slice", [probs, const(p + ".z", np.array([0], np.int64)),
                                  const(p + ".m1", np.array([-1], np.int64)), axis_last], p + ".pc")
        p_own = node("Slice", [probs, const(p + ".m1b", np.array([-1], np.int64)), big, axis_last], p + ".po")
        ctx = node("Add", [node("MatMul", [p_cached, f"v{index}"], p + ".pv"),
                           node("Mul", [p_own, parts["v"]], p + ".pvo")], p + ".ctx")
        attn_out = linear(node("Reshape", [ctx, shape_bd], p + ".ctx2d"), attn.out_proj.weight, attn.out_proj.bias,
                          p + ".o")
        n1 = layer.norm1
        h = node("LayerNormalization", [node("Add", [x, attn_out], p + ".r1"), const(p + ".n1g", _np(n1.weight)),
                                        const(p + ".n1b", _np(n1.bias))], p + ".h", axis=-1, epsilon=n1.eps)
        up = node("Relu", [linear(h, layer.linear1.weight, layer.linear1.bias, p + ".up")], p + ".relu")
        down = linear(up, layer.linear2.weight, layer.linear2.bias, p + ".down")
        n2 = layer.norm2
        x = node("LayerNormalization", [node("Add", [h, down], p + ".r2"), const(p + ".n2g", _np(n2.weight)),
                                        const(p + ".n2b", _np(n2.bias))], p + ".x", axis=-1, epsilon=n2.eps)
        k_out.append(node("Unsqueeze", [node("Reshape", [parts["k"], shape_bh_d], p + ".k3"), axis0], p + ".ku"))
        v_out.append(node("Unsqueeze", [node("Reshape", [parts["v"], shape_bh_d], p + ".v3"), axis0], p + ".vu"))
    logits = linear(x, model.ar_predict_layer.weight, None, "predict")
    node("Identity", [logits], "logits")
    node("Concat", k_out, "k_new", axis=0)
    node("Concat", v_out, "v_new", axis=0)

    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", f32, ["B", dim]),
              helper.make_tensor_value_info("bias", f32, ["B", 1, 1, "C"])]
    for index in range(layers):
        inputs.append(helper.make_tensor_value_info(f"k{index}", f32, ["B", heads, head_dim, "C"]))
        inputs.append(helper.make_tensor_value_info(f"v{index}", f32, ["B", heads, "C", head_dim]))
    outputs = [helper.make_tensor_value_info("logits", f32, ["B", cfg.vocab_size]),
               helper.make_tensor_value_info("k_new", f32, [layers, "B", heads, head_dim]),
               helper.make_tensor_value_info("v_new", f32, [layers, "B", heads, head_dim])]
    graph = helper.make_graph(nodes, "gsv_s1_step", inputs, outputs, inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gsv_core")
    onnx_model.ir_version = 8
    return onnx_model.SerializeToString()


def _release_freed_memory() -> None:
    """glibc keeps large freed blocks mapped; hand them back (the step's session holds its own weights, one copy of
    the fp32 projections, ~300 MB for the official GPT: without this the transient copies stay in RSS too)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class OnnxStep:
    """An onnxruntime session of :func:`build_step_graph` for one model, with its threads set like torch's."""

    def __init__(self, model, threads: Optional[int] = None, int8: bool = False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # torch runs between two steps (sampling, the cache write): idle ORT threads must not spin against it
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        graph = build_step_graph(model, int8)
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        self.int8 = int8
        del graph
        _release_freed_memory()  # the serialised graph (a copy of the weights) is gone: give its pages back
        self.layers = model.config.num_layers

    def binding(self, x: torch.Tensor, bias: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                logits: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor):
        """An IO binding of these torch tensors (contiguous fp32 CPU tensors that must outlive it)."""
        io = self.session.io_binding()

        def bind(fn, name, t):
            fn(name, "cpu", 0, np.float32, list(t.shape), t.data_ptr())

        bind(io.bind_input, "x", x)
        bind(io.bind_input, "bias", bias)
        for index in range(self.layers):
            bind(io.bind_input, f"k{index}", keys[index])
            bind(io.bind_input, f"v{index}", values[index])
        bind(io.bind_output, "logits", logits)
        bind(io.bind_output, "k_new", k_new)
        bind(io.bind_output, "v_new", v_new)
        return io

    def run(self, io) -> None:
        self.session.run_with_iobinding(io)


class OnnxDecodeSession:
    """One decoding call with the step on onnxruntime (the session interface of ``Text2Semantic._decode``)."""

    def __init__(self, model, step: OnnxStep, batch: int, text_len: int, prompt_len: int, budget: int,
                 text_keep: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype, capacity: int):
        cfg = model.config
        self.model, self.step_runner = model, step
        self.batch, self.text_len, self.prompt_len, self.text_keep = batch, text_len, prompt_len, text_keep
        self.length = 0
        self.alive: Optional[torch.Tensor] = None
        self.x = torch.zeros(batch, cfg.hidden_dim, device="cpu")
        self.logits = torch.zeros(batch, cfg.vocab_size, device="cpu")
        self.k_new = torch.zeros(cfg.num_layers, batch, cfg.num_heads, cfg.head_dim, device="cpu")
        self.v_new = torch.zeros_like(self.k_new)
        self.text_pad = None if text_keep is None else ~text_keep.to("cpu")  # padded text keys, never attended
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        cfg = self.model.config
        keys = torch.zeros(cfg.num_layers, self.batch, cfg.num_heads, cfg.head_dim, capacity, device="cpu")
        values = torch.zeros(cfg.num_layers, self.batch, cfg.num_heads, capacity, cfg.head_dim, device="cpu")
        if self.length:
            keys[..., : self.length] = self.keys[..., : self.length]
            values[:, :, :, : self.length] = self.values[:, :, :, : self.length]
        self.keys, self.values, self.capacity = keys, values, capacity
        self.bias = torch.zeros(self.batch, 1, 1, capacity, device="cpu")
        self.positions = torch.arange(capacity, device="cpu")
        self.io = self.step_runner.binding(self.x, self.bias, keys, values, self.logits, self.k_new, self.v_new)

    # -- prefill: torch, writing this backend's layout ------------------------------------------------------------
    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.length + k.shape[2]
        self.keys[layer, :, :, :, self.length : end] = k.transpose(2, 3)
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :, :end].transpose(2, 3), self.values[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def prefill(self, xy: torch.Tensor) -> torch.Tensor:
        needed = xy.shape[1] + 1
        if needed > self.capacity:
            self._allocate(_grown(needed + GROWTH))
        m = self.model
        mask = m.prefill_mask(self.text_len, self.prompt_len, self.text_keep, xy.device)
        return m.ar_predict_layer(m.h(xy, mask, self)[:, -1])

    # -- one token ------------------------------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor, audio_position: int) -> torch.Tensor:
        m = self.model
        pos = self.length
        if pos + 1 > self.capacity:
            self._allocate(_grown(max(pos + 1, self.capacity + GROWTH)))
        emb = F.embedding(tokens[:, 0], m.audio_embedding_weight) + m.position_table(
            audio_position + 1, torch.device("cpu"), torch.float32)[audio_position]
        if self.alive is None:
            self.x.copy_(emb)
        else:
            self.x.index_copy_(0, self.alive, emb)
        self.bias.copy_(torch.where(self.positions < pos, 0.0, float("-inf")).expand_as(self.bias))
        if self.text_pad is not None:
            self.bias[:, 0, 0, : self.text_len].masked_fill_(self.text_pad, float("-inf"))
        self.step_runner.run(self.io)
        self.keys[:, :, :, :, pos] = self.k_new
        self.values[:, :, :, pos] = self.v_new
        self.length = pos + 1
        return self.logits.clone() if self.alive is None else self.logits.index_select(0, self.alive)

    def keep_rows(self, index: torch.Tensor) -> None:
        self.alive = index if self.alive is None else self.alive.index_select(0, index)
