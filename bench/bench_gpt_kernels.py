"""Where a GPT decoding step's time goes on this CPU, and which matmul kernels could make it faster.

The s1 GPT at the official size (24 layers x 512, 77.6 M parameters, 302 MB of fp32 projection weights) decodes one
token per step; every step multiplies one activation row by every projection matrix, so a step is bound by how fast
the weights stream from memory. This script measures, on official-size random weights (different per layer, so
nothing stays in cache):

* read bandwidth: summing a 302 MB float32 tensor (the floor of an fp32 decode step's matmul time);
* the 24 layers' four projections (q/k/v, out, FFN up, FFN down) + the output layer, one activation row (batch 1)
  and five rows (batch 5), through each candidate kernel:
  ``fp32`` (F.linear: MKL), ``fp32-mkl-packed`` / ``fp32-onednn-packed`` (prepacked weights),
  ``fp16w-fbgemm`` (fp16 weights, fp32 compute), ``int8-dynamic-fbgemm`` (int8 weights, activations quantised per
  row on the fly: torch.ao dynamic quantisation), ``bf16`` (bf16 weights and activations), ``int8w-bf16``
  (torch._weight_int8pack_mm, the GPT_INT8 kernel), ``onnxruntime-int8`` / ``onnxruntime-fp32`` (the same stack as
  an ONNX graph of MatMul / MatMulInteger nodes) where onnxruntime is installed;
* one whole decoding step (sampling included) of the plain GPT and of each decoding variant (static cache on torch,
  on onnxruntime, int8 on onnxruntime and on fbgemm), median time between two tokens after a 200-position prefill.

Prints milliseconds per step (median of ``--repeats`` rounds) and the machine's CPU flags. Timings are
machine-dependent: compare kernels within one run.

    .venv/bin/python bench/bench_gpt_kernels.py [--threads 2] [--repeats 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LAYERS, DIM, FFN, VOCAB = 24, 512, 2048, 1025


def _timeit(fn, repeats: int, inner: int = 3) -> float:
    fn()
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        rounds.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(rounds)


def projection_weights(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3 * DIM, DIM), (DIM, DIM), (FFN, DIM), (DIM, FFN)] * LAYERS + [(VOCAB, DIM)]
    return [(torch.randn(s, generator=g) * 0.02, torch.randn(s[0], generator=g) * 0.01) for s in shapes]


def kernel_variants(weights):
    """name -> (prepare(w, b) -> state, apply(x, state) -> y) for each candidate available in this build."""
    out = {"fp32": (lambda w, b: (w, b), lambda x, s: F.linear(x, s[0], s[1]))}
    if hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight"):
        out["fp32-mkl-packed"] = (
            lambda w, b: (torch.ops.mkl._mkl_reorder_linear_weight(w, 5), w, b),
            lambda x, s: torch.ops.mkl._mkl_linear(x, s[0], s[1], s[2], x.shape[0]),
        )
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
        out["fp32-onednn-packed"] = (
            lambda w, b: (torch.ops.mkldnn._reorder_linear_weight(w, 1), b),
            lambda x, s: torch.ops.mkldnn._linear_pointwise(x, s[0], s[1], "none", [], ""),
        )
    if hasattr(torch.ops.quantized, "linear_prepack_fp16"):
        out["fp16w-fbgemm"] = (
            lambda w, b: torch.ops.quantized.linear_prepack_fp16(w, b),
            lambda x, s: torch.ops.quantized.linear_dynamic_fp16(x, s),
        )
    if "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines:
        def prep_int8(w, b):
            scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
            zp = torch.zeros(w.shape[0], dtype=torch.long)
            qw = torch.quantize_per_channel(w, scales, zp, 0, torch.qint8)
            return torch.ops.quantized.linear_prepack(qw, b)

        out["int8-dynamic-fbgemm"] = (prep_int8, lambda x, s: torch.ops.quantized.linear_dynamic(x, s, True))
    out["bf16"] = (lambda w, b: (w.bfloat16(), b.bfloat16()),
                   lambda x, s: F.linear(x.bfloat16(), s[0], s[1]))
    if hasattr(torch, "_weight_int8pack_mm"):
        def prep_w8(w, b):
            scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
            return torch.round(w / scales[:, None]).to(torch.int8), scales.bfloat16(), b.bfloat16()

        out["int8w-bf16"] = (prep_w8, lambda x, s: torch._weight_int8pack_mm(x.bfloat16(), s[0], s[1]) + s[2])
    return out


def onnx_stack(weights, rows: int, int8: bool, threads: int):
    """The projection stack as one onnxruntime session (MatMul + Add per projection, ReLU-free: kernel speed only)."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    nodes, inits = [], []
    prev = "x"
    for i, (w, b) in enumerate(weights):
        wt = w.t().contiguous().numpy()
        if int8:
            scale = np.abs(wt).max(axis=0) / 127.0 + 1e-12
            q = np.clip(np.round(wt / scale), -127, 127).astype(np.int8)
            inits += [numpy_helper.from_array(q, f"w{i}"), numpy_helper.from_array(scale.astype(np.float32), f"s{i}"),
                      numpy_helper.from_array(np.zeros(1, np.int8), f"z{i}")]
            # x quantised per tensor on the fly (DynamicQuantizeLinear), int8 weights per column
            nodes += [helper.make_node("DynamicQuantizeLinear", [prev], [f"xq{i}", f"xs{i}", f"xz{i}"]),
                      helper.make_node("MatMulInteger", [f"xq{i}", f"w{i}", f"xz{i}", f"z{i}"], [f"mi{i}"]),
                      helper.make_node("Cast", [f"mi{i}"], [f"mf{i}"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"xs{i}", f"s{i}"], [f"sc{i}"]),
                      helper.make_node("Mul", [f"mf{i}", f"sc{i}"], [f"mm{i}"])]
        else:
            inits.append(numpy_helper.from_array(wt, f"w{i}"))
            nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]))
        inits.append(numpy_helper.from_array(b.numpy(), f"b{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"y{i}"]))
        # keep the chain sequential like a real step: the next projection reads the first DIM (or FFN) values
        nxt = weights[i + 1][0].shape[1] if i + 1 < len(weights) else None
        if nxt is not None:
            starts = numpy_helper.from_array(np.array([0], np.int64), f"st{i}")
            ends = numpy_helper.from_array(np.array([nxt], np.int64), f"en{i}")
            axes = numpy_helper.from_array(np.array([1], np.int64), f"ax{i}")
            inits += [starts, ends, axes]
            nodes.append(helper.make_node("Slice", [f"y{i}", f"st{i}", f"en{i}", f"ax{i}"], [f"p{i}"]))
            prev = f"p{i}"
        else:
            prev = f"y{i}"
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, DIM])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((rows, DIM)).astype(np.float32)
    return lambda: sess.run(None, {"x": x})


def stack_runner(weights, variant, rows: int):
    prepare, apply = variant
    states = [prepare(w, b) for w, b in weights]
    x0 = torch.randn(rows, DIM)

    # chain exactly: qkv(512->1536) out(512->512) up(512->2048) down(2048->512) ... head(512->1025)
    def chained():
        x = x0
        for i, s in enumerate(states):
            kind = i % 4 if i < 4 * LAYERS else 4
            inp = x if kind != 1 else x[:, :DIM].contiguous()
            y = apply(inp.to(torch.float32) if inp.dtype != torch.float32 else inp, s)
            x = y[:, :DIM].contiguous().float() if kind in (0, 1) else y.float()
        return x

    return chained


def decode_step_runners(threads: int):
    """Plain vs static-cache GPT, one step after a 200-position prefill, official size, random weights."""
    from gsv_core.models.s1 import S1Config, Text2Semantic
    from gsv_core.models.sampling import SamplingParams

    torch.manual_seed(0)
    model = Text2Semantic(S1Config()).eval()
    runners = {}
    phones = torch.randint(0, 700, (60,))
    bert = torch.randn(1024, 60)
    prompt = torch.randint(0, 1000, (140,))
    steps = 40

    def per_token(m):
        def run() -> float:
            """Median time between two sampled tokens (the prefill excluded)."""
            stamps: list[float] = []
            with torch.inference_mode():
                m.generate([phones], [bert], prompt, SamplingParams(top_k=15), early_stop_num=steps - 1,
                           generator=[torch.Generator().manual_seed(0)], logits_hook=_no_eos,
                           token_hook=lambda *_: stamps.append(time.perf_counter()))
            return statistics.median(b - a for a, b in zip(stamps, stamps[1:])) * 1e3
        return run

    runners["plain"] = per_token(model)
    from gsv_core.models.s1_onnx import onnx_available
    from gsv_core.models.s1_static import StaticCacheText2Semantic

    runners["static (torch)"] = per_token(StaticCacheText2Semantic.from_plain(model))
    if onnx_available():
        runners["static (onnxruntime)"] = per_token(StaticCacheText2Semantic.from_plain(model, backend="onnx"))
        runners["int8 (onnxruntime)"] = per_token(StaticCacheText2Semantic.from_plain(model, backend="onnx-int8"))
    from gsv_core.models.quant import dynamic_int8_supported, quantize_gpt_dynamic_int8

    if dynamic_int8_supported():
        import copy

        runners["int8 (fbgemm)"] = per_token(StaticCacheText2Semantic.from_plain(
            quantize_gpt_dynamic_int8(copy.deepcopy(model))))
    return runners, steps


def _no_eos(step, rows, logits):
    logits = logits.clone()
    logits[:, -1] = float("-inf")
    return logits


def cpu_description() -> dict:
    from gsv_core.device import cpu_features

    return cpu_features()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-steps", action="store_true", help="kernels only")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"cpu": cpu_description(), "threads": args.threads, "torch": torch.__version__}
    print(f"CPU: {results['cpu']}", flush=True)

    big = torch.randn(LAYERS * (3 * DIM * DIM + DIM * DIM + 2 * FFN * DIM) + VOCAB * DIM)
    ms = _timeit(lambda: big.sum(), args.repeats)
    results["read_302MB_ms"] = ms
    print(f"read {big.numel() * 4 / 1e6:.0f} MB (sum): {ms:.2f} ms = {big.numel() * 4 / ms / 1e6:.1f} GB/s", flush=True)
    del big

    weights = projection_weights()
    results["stack_ms"] = {}
    for rows in (1, 5):
        for name, variant in kernel_variants(weights).items():
            try:
                run = stack_runner(weights, variant, rows)
                ms = _timeit(run, args.repeats)
            except Exception as exc:  # noqa: BLE001 - a kernel this build lacks
                print(f"  {name:22s} rows={rows}: unavailable ({type(exc).__name__}: {str(exc)[:80]})")
                continue
            results["stack_ms"][f"{name}/b{rows}"] = ms
            print(f"  {name:22s} rows={rows}: {ms:7.2f} ms per step (projections only)", flush=True)
        for int8 in (False, True):
            run = onnx_stack(weights, rows, int8, args.threads)
            if run is None:
                continue
            name = "onnxruntime-" + ("int8" if int8 else "fp32")
            ms = _timeit(run, args.repeats)
            results["stack_ms"][f"{name}/b{rows}"] = ms
            print(f"  {name:22s} rows={rows}: {ms:7.2f} ms per step (projections only)", flush=True)
    if not args.skip_steps:
        runners, steps = decode_step_runners(args.threads)
        results["generate_ms_per_token"] = {}
        for name, run in runners.items():
            run()
            ms = statistics.median(run() for _ in range(max(3, args.repeats // 2)))
            results["generate_ms_per_token"][name] = ms
            print(f"  decoding step, {name:22s}: {ms:6.2f} ms per token (after a 200-position prefill)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
