"""Where and in which precision models run: one decision, made from the settings.

* :func:`resolve_device` / :func:`resolve_dtype`: the device and dtype of every model. ``PRECISION = "auto"`` is fp16
  on CUDA (what upstream runs; bf16 only when asked, on GPUs that support it) and, on the CPU, the fastest profile
  the CPU really runs: bf16 where it has native bf16 arithmetic (AVX-512 BF16 or AMX), fp32 everywhere else (on an
  AVX2-only CPU bf16 is emulated and many times slower than fp32).
* :func:`configure_cuda`: the GPU defaults (TF32 for the fp32 matmuls and convolutions that remain); called when a
  CUDA device is resolved.
* :func:`cpu_features`, :func:`native_cpu_bf16`: what this CPU runs natively (torch's capability + /proc/cpuinfo).
* :func:`reduced_precision_warning`: the sentence the UI and CLI show when someone asks for bf16 or GPT_INT8 on a
  CPU that emulates them, with the slowdown measured on this machine (:func:`cpu_precision_profile`, a one-time
  micro-benchmark cached per machine).
* :func:`host_copy`: audio off the GPU through a reused pinned host buffer (no pageable bounce buffer, no
  allocation per fragment); a plain ``.numpy()`` on the CPU.

fp16 on the CPU: a CPU has no native fp16 arithmetic outside AVX-512 FP16 / AMX-FP16 and torch lacks some fp16 CPU
kernels (the FFT), so an fp16 request on the CPU runs fp32, unless the override :func:`allow_cpu_fp16` (or
``GSV_CPU_FP16=1`` in the environment) is on: tests use it to run the real fp16 code path on a CPU-only machine
(slow, and only for checking that every op and cast is right before it meets a GPU).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

log = logging.getLogger("gsv.device")

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CPU_FP16_ENV = "GSV_CPU_FP16"
#: the /proc/cpuinfo flags that matter for our kernels (reported with every benchmark)
RELEVANT_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                      "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_NATIVE_FP16_FLAGS = ("avx512_fp16", "amx_fp16")

_fp16_override = threading.local()
_pinned = threading.local()
_cuda_configured = False


# -- devices ---------------------------------------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the first CUDA GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    else:
        from .errors import GSVError

        try:
            device = torch.device(str(name).strip())
        except (RuntimeError, ValueError):
            raise GSVError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
        if device.type not in ("cpu", "cuda"):
            raise GSVError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise GSVError(f"device {name!r} was asked for, but no CUDA GPU is available to this torch build")
    if device.type == "cuda":
        configure_cuda()
    return device


def configure_cuda() -> None:
    """GPU defaults peers and upstream use, set once per process: TF32 for fp32 matmuls and cuDNN convolutions
    (the fp32 work left under fp16/bf16 models: sampling is elementwise, spectrograms are FFTs, so nothing whose
    numerics we promise is a TF32 matmul; an fp32 model on an Ampere+ GPU gets ~10-bit-mantissa matmuls, as
    upstream's fp32 mode does with torch's defaults for convolutions). cuDNN autotuning stays off: every sentence
    has another length, and benchmark mode would re-tune on each."""
    global _cuda_configured
    if _cuda_configured:
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False
    _cuda_configured = True


# -- dtypes ----------------------------------------------------------------------------------------------------------
def cpu_fp16_allowed() -> bool:
    """Whether fp16 requests on the CPU run in fp16 (test/debug override) instead of fp32."""
    if getattr(_fp16_override, "on", False):
        return True
    return os.environ.get(CPU_FP16_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def allow_cpu_fp16() -> Iterator[None]:
    """Within this block (this thread), ``precision="fp16"`` on the CPU really loads fp16 models."""
    previous = getattr(_fp16_override, "on", False)
    _fp16_override.on = True
    try:
        yield
    finally:
        _fp16_override.on = previous


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype models run in for a ``PRECISION`` setting on ``device`` (see the module docstring)."""
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_cpu_bf16() else torch.float32
    if precision not in _DTYPES:
        raise ValueError(f"unknown precision {precision!r}; use one of auto, {', '.join(_DTYPES)}")
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16 and not cpu_fp16_allowed():
        return torch.float32  # see the module docstring: emulated and partly unsupported on CPUs
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16 support (it needs an Ampere or newer GPU): running fp16 instead")
        return torch.float16
    return dtype


# -- what the CPU runs natively --------------------------------------------------------------------------------------
_features: Optional[dict] = None


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def cpu_features() -> dict:
    """This CPU: model name, torch's capability (``DEFAULT``/``AVX2``/``AVX512``...), the relevant instruction-set
    flags present, and whether bf16/fp16 arithmetic is native. ``flags_known`` is False where /proc/cpuinfo is not
    readable (then native support is decided by :func:`cpu_precision_profile`'s measurement)."""
    global _features
    if _features is None:
        model, flags = _cpuinfo()
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except Exception:  # noqa: BLE001 - very old builds
            capability = "unknown"
        _features = {
            "model": model or "unknown",
            "cores": os.cpu_count(),
            "capability": capability,
            "flags": [f for f in RELEVANT_CPU_FLAGS if f in flags],
            "flags_known": bool(flags),
            "native_bf16": any(f in flags for f in _NATIVE_BF16_FLAGS),
            "native_fp16": any(f in flags for f in _NATIVE_FP16_FLAGS),
        }
    return dict(_features)


def native_cpu_bf16() -> bool:
    """Whether bf16 matmuls run natively on this CPU (AVX-512 BF16 or AMX), i.e. faster than fp32 rather than
    emulated. Without /proc/cpuinfo, a CPU torch reports as below AVX-512 has none, and one reporting AVX-512 is
    measured once (cached per machine)."""
    feats = cpu_features()
    if feats["flags_known"]:
        return feats["native_bf16"]
    if not str(feats["capability"]).upper().startswith("AVX512"):
        return False
    profile = cpu_precision_profile()
    return profile["bf16_ms"] < profile["fp32_ms"]


# -- the measured cost of reduced precision --------------------------------------------------------------------------
_profile: Optional[dict] = None
_profile_lock = threading.Lock()


def profile_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gsv_playground" / "cpu_precision_profile.json"


def _machine_key() -> str:
    feats = cpu_features()
    return "|".join([feats["model"], str(feats["cores"]), feats["capability"], ",".join(feats["flags"]),
                     torch.__version__, str(torch.get_num_threads())])


def _measure(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def measure_cpu_precision() -> dict:
    """Time one 512 -> 2048 linear layer on one activation row (a GPT decoding step's FFN shape) in fp32, bf16 and
    weight-only int8 x bf16 (the GPT_INT8 kernel of bf16 CPUs) and a 256-channel, kernel-7 Conv1d over 320 frames
    (a SoVITS decoder shape) in fp32 and bf16. Milliseconds, best of 5 (of 1 for the emulated bf16 convolution); a
    few seconds on an AVX2 CPU, once per machine (:func:`cpu_precision_profile`)."""
    import torch.nn.functional as F

    cpu = torch.device("cpu")  # a CPU measurement by definition
    gen = torch.Generator(device=cpu).manual_seed(0)
    w = torch.randn(2048, 512, generator=gen, device=gen.device) * 0.02
    b = torch.zeros(2048, device=cpu)
    x = torch.randn(1, 512, generator=gen, device=gen.device)
    out = {"fp32_ms": _measure(lambda: F.linear(x, w, b))}
    wb, bb, xb = w.bfloat16(), b.bfloat16(), x.bfloat16()
    out["bf16_ms"] = _measure(lambda: F.linear(xb, wb, bb))
    if hasattr(torch, "_weight_int8pack_mm"):
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        q = torch.round(w / scales[:, None]).to(torch.int8)
        sb = scales.bfloat16()
        out["int8_bf16_ms"] = _measure(lambda: torch._weight_int8pack_mm(xb, q, sb))
    cw = torch.randn(256, 256, 7, generator=gen, device=gen.device) * 0.02
    cx = torch.randn(1, 256, 320, generator=gen, device=gen.device)
    out["conv_fp32_ms"] = _measure(lambda: F.conv1d(cx, cw, padding=3))
    cwb, cxb = cw.bfloat16(), cx.bfloat16()
    # emulated bf16 convolutions take seconds: one timed call after one warm-up
    out["conv_bf16_ms"] = _measure(lambda: F.conv1d(cxb, cwb, padding=3), repeats=1)
    out["threads"] = torch.get_num_threads()
    return out


def cpu_precision_profile(cache_path: Optional[Path] = None, refresh: bool = False) -> dict:
    """:func:`measure_cpu_precision` once per machine: kept in memory and in a JSON file under the user's cache
    folder (``$XDG_CACHE_HOME/gsv_playground``), keyed by CPU, flags, torch version and thread count."""
    global _profile
    path = Path(cache_path) if cache_path is not None else profile_cache_path()
    key = _machine_key()
    with _profile_lock:
        if _profile is not None and _profile.get("key") == key and not refresh and cache_path is None:
            return dict(_profile)
        stored: dict = {}
        if not refresh:
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                stored = {}
        if stored.get("key") != key:
            stored = {"key": key, **measure_cpu_precision()}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(stored, indent=1), encoding="utf-8")
                tmp.replace(path)
            except OSError:
                pass  # a read-only home: measured again next process, nothing else lost
        if cache_path is None:
            _profile = stored
        return dict(stored)


def reduced_precision_warning(precision: str, gpt_int8: bool = False, device: "torch.device | str" = "cpu",
                              profile: Optional[dict] = None) -> Optional[str]:
    """A warning for the UI and CLI when ``precision``/``gpt_int8`` ask this CPU for arithmetic it only emulates,
    naming the slowdown measured on this machine; None when the request is fine (GPU, native bf16, fp32/auto).

    GPT_INT8 on a CPU without native bf16 runs fbgemm's integer kernels (fast on AVX2), so only an explicit bf16
    precision is warned about there."""
    device = torch.device(device)
    if device.type != "cpu":
        return None
    feats = cpu_features()
    wants_bf16 = precision == "bf16"
    if not wants_bf16 or native_cpu_bf16():
        return None
    prof = profile if profile is not None else cpu_precision_profile()
    sets = "/".join(feats["flags"][-3:]) if feats["flags"] else feats["capability"]
    matvec = prof["bf16_ms"] / max(prof["fp32_ms"], 1e-9)
    conv = prof.get("conv_bf16_ms", 0.0) / max(prof.get("conv_fp32_ms", 1e-9), 1e-9)
    message = (f"PRECISION = bf16 on this CPU ({feats['capability']}, {sets}; no AVX-512 BF16 or AMX) is emulated: "
               f"measured here, a GPT layer's matrix-vector product takes {prof['bf16_ms']:.2f} ms in bf16 against "
               f"{prof['fp32_ms']:.3f} ms in fp32 ({matvec:.0f}x slower)")
    if conv > 0:
        message += f" and a SoVITS convolution {conv:.0f}x slower"
    message += ". Use PRECISION = auto or fp32 for speed"
    if gpt_int8:
        message += " (GPT_INT8 alone is fine on this CPU: it runs integer kernels)"
    return message + "."


# -- audio out -------------------------------------------------------------------------------------------------------
def host_copy(tensor: "torch.Tensor"):
    """``tensor`` as a float32 numpy array on the host. From a GPU, it goes through a pinned buffer kept per thread
    and device (grown when needed) with an asynchronous copy and one wait for the current stream, then a numpy copy
    out of the buffer (the buffer is reused by the next call). On the CPU it is ``tensor.float().numpy()`` (a copy
    only when the dtype changes)."""
    t = tensor.detach()
    if t.device.type != "cuda":
        return t.to(dtype=torch.float32).contiguous().numpy()
    flat = t.reshape(-1).to(dtype=torch.float32)
    buffers = getattr(_pinned, "buffers", None)
    if buffers is None:
        buffers = _pinned.buffers = {}
    key = str(t.device)
    buf = buffers.get(key)
    if buf is None or buf.numel() < flat.numel():
        buf = torch.empty(max(flat.numel(), 1 << 20), dtype=torch.float32, device="cpu", pin_memory=True)
        buffers[key] = buf
    view = buf[: flat.numel()]
    view.copy_(flat, non_blocking=True)
    torch.cuda.current_stream(t.device).synchronize()
    return view.numpy().copy().reshape(tuple(t.shape))
