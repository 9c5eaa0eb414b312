"""Reading and writing the official GPT-SoVITS checkpoint formats, safely.

Formats (see ``docs/ARCHITECTURE.md`` and the upstream spec):

* s1 GPT ``.ckpt``: a ``torch.save`` zip holding ``{"weight": OrderedDict[str, fp16 Tensor] with a "model." prefix,
  "config": dict (the training yaml), "info": "GPT-e<epoch>"}``.
* s2 SoVITS ``.pth``: ``{"weight": {generator tensors without enc_q.*, fp16}, "config": utils.HParams,
  "info": "<epoch>epoch_<step>iteration"[, "lora_rank"]}``. v2Pro / v2ProPlus / LoRA files carry two ASCII digits in
  place of the zip's leading ``PK`` (``05``, ``06``, ``03``, ``04``); the pickled config refers to upstream's class
  ``utils.HParams`` by name.
* ERes2NetV2 speaker model: a bare state dict.
* SoVITS v3/v4 (``s2Gv3.pth`` / ``s2Gv4.pth``): the same s2 layout with SynthesizerTrnV3 weights (``cfm.*``, ``bridge``,
  ``wns1``...). Their LoRA exports (header ``03`` / ``04``, ``lora_rank``) hold only the trained tensors under peft's
  names and are applied on top of the official base model (``loading.load_sovits``). Vocoders: the v3 BigVGAN folder
  (``config.json`` + ``bigvgan_generator.pt`` = ``{"generator": weight-norm state dict}``) and the v4 ``vocoder.pth``
  (a bare state dict).

Every file is read with torch's weights-only unpickler. The only non-tensor class we allow is upstream's
``utils.HParams``, mapped to :class:`HParams` below, which merely stores attributes. A pickle that asks for
anything else (``os.system``, ``builtins.eval``, ...) is refused before any of it runs.

Files are written atomically (temporary file + rename), so an interrupted save never destroys an existing file.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .errors import CheckpointError, UnsupportedVersionError
from .fileio import write_bytes_atomic

# --------------------------------------------------------------------------------------------------------------
# Version markers and known files
# --------------------------------------------------------------------------------------------------------------

ZIP_MAGIC = b"PK"
XZ_MAGIC = b"\xfd7zXZ\x00"

#: Two-byte headers that replace ``PK`` in version-stamped SoVITS files -> (symbol version, model version, is_lora).
HEADER_VERSIONS: dict[bytes, tuple[str, str, bool]] = {
    b"00": ("v1", "v1", False),
    b"01": ("v2", "v2", False),
    b"02": ("v2", "v3", False),
    b"03": ("v2", "v3", True),
    b"04": ("v2", "v4", True),
    b"05": ("v2", "v2Pro", False),
    b"06": ("v2", "v2ProPlus", False),
}
VERSION_HEADERS: dict[str, bytes] = {"v2Pro": b"05", "v2ProPlus": b"06"}
LORA_HEADERS: dict[str, bytes] = {"v3": b"03", "v4": b"04"}

#: MD5 of the first 8 KiB of the official pretrained SoVITS generators -> (file name, model version).
OFFICIAL_SOVITS_HASHES: dict[str, tuple[str, str]] = {
    "dc3c97e17592963677a4a1681f30c653": ("s2G488k.pth", "v1"),
    "6642b37f3dbb1f76882b69937c95a5f3": ("s2G2333k.pth", "v2"),
    "43797be674a37c1c83ee81081941ed0f": ("s2Gv3.pth", "v3"),
    "4f26b9476d0c5033e04162c486074374": ("s2Gv4.pth", "v4"),
    "c7e9fce2223f3db685cdfa1e6368728a": ("s2Gv2Pro.pth", "v2Pro"),
    "66b313e39455b57ab1b0bc0b239c9d0a": ("s2Gv2ProPlus.pth", "v2ProPlus"),
}

SUPPORTED_SOVITS_VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")
CFM_SOVITS_VERSIONS = ("v3", "v4")  # SoVITS + CFM (DiT) + vocoder
GPT_PREFIX = "model."

# Keys that only exist in SoVITS v3/v4 (CFM + vocoder) generators.
_V3V4_KEY_PREFIXES = ("cfm.", "bridge.", "wns1.", "linear_mel.")
# Keys of the v1/v2 decoder that a v3/v4 model does not have.
_VITS_DECODER_PREFIXES = ("dec.", "flow.")

#: The base model a v3/v4 LoRA file is applied to: version -> path in upstream's pretrained_models folder.
CFM_BASE_MODELS: dict[str, str] = {"v3": "s2Gv3.pth", "v4": "gsv-v4-pretrained/s2Gv4.pth"}
#: The vocoders: v3 BigVGAN folder (config.json + bigvgan_generator.pt), v4 HiFi-GAN state dict.
BIGVGAN_DIR = "models--nvidia--bigvgan_v2_24khz_100band_256x"
BIGVGAN_WEIGHTS = "bigvgan_generator.pt"
V4_VOCODER = "gsv-v4-pretrained/vocoder.pth"


# --------------------------------------------------------------------------------------------------------------
# HParams: the stand-in for upstream's pickled config class
# --------------------------------------------------------------------------------------------------------------


class HParams:
    """Attribute-and-item access mapping, the shape of upstream's ``utils.HParams``.

    Instances keep their entries in ``__dict__`` (as upstream's do) so that pickling one produces the same
    opcodes upstream produces, and upstream's code can read a config we saved.
    """

    def __init__(self, **entries: Any):
        for key, value in entries.items():
            self[key] = HParams(**value) if isinstance(value, dict) else value

    # mapping protocol
    def __getitem__(self, key: str) -> Any:
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HParams):
            return self.__dict__ == other.__dict__
        return NotImplemented

    def keys(self):
        return self.__dict__.keys()

    def items(self):
        return self.__dict__.items()

    def values(self):
        return self.__dict__.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def __repr__(self) -> str:
        return f"HParams({self.__dict__!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict copy (what the rest of gsv_core works with)."""
        return {k: (v.to_dict() if isinstance(v, HParams) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "HParams":
        if isinstance(data, HParams):
            return data
        return cls(**{k: (v.to_dict() if isinstance(v, HParams) else v) for k, v in data.items()})


# Upstream pickles its config as the global "utils.HParams": let the weights-only unpickler build ours instead.
torch.serialization.add_safe_globals([(HParams, "utils.HParams")])


class _OfficialNamePickler(pickle._Pickler):  # the pure-Python pickler lets us choose how a class is named
    """Pickler that writes :class:`HParams` by upstream's name, ``utils.HParams``."""

    def save_global(self, obj, name=None):  # noqa: D401 - pickle hook
        if obj is HParams:
            self.write(pickle.GLOBAL + b"utils\nHParams\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _OfficialPickleModule:
    """The ``pickle_module`` handed to ``torch.save`` for files upstream must be able to read."""

    Pickler = _OfficialNamePickler
    Unpickler = pickle.Unpickler
    load = staticmethod(pickle.load)
    dump = staticmethod(pickle.dump)


# --------------------------------------------------------------------------------------------------------------
# Low-level reading
# --------------------------------------------------------------------------------------------------------------


def _describe(path: Path, expected: str) -> str:
    return f"{path} (expected {expected})"


#: the most an .xz checkpoint may decompress to (the largest official file, s2Gv4.pth, is under 1 GiB); set from
#: the settings' MAX_UNPACKED_MB by gsv_core.api.Engine.open. A small .xz that would inflate beyond it (an "xz
#: bomb") is refused after at most this much memory, not after it has filled the RAM.
MAX_XZ_BYTES = 2 * 2**30


def _xz_decompress(data: bytes, path: Path, expected: str) -> bytes:
    decomp = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = bytearray()
    chunk_in = data
    try:
        while True:
            piece = decomp.decompress(chunk_in, max_length=1 << 24)
            out += piece
            chunk_in = b""
            if len(out) > MAX_XZ_BYTES:
                raise CheckpointError(f"{_describe(path, expected)} decompresses to more than "
                                      f"{MAX_XZ_BYTES / 2**20:.0f} MiB (MAX_UNPACKED_MB); refused")
            if decomp.eof:
                break
            if decomp.needs_input:
                raise CheckpointError(f"{_describe(path, expected)} is a truncated xz archive")
    except lzma.LZMAError as exc:
        raise CheckpointError(f"{_describe(path, expected)} is a damaged xz archive: {exc}") from exc
    if not out:
        raise CheckpointError(f"{_describe(path, expected)} decompresses to nothing")
    return bytes(out)


def read_file_bytes(path: str | os.PathLike, expected: str) -> tuple[bytes, bytes]:
    """Read a checkpoint file, undoing an xz wrapper. Returns ``(original header, bytes torch can load)``."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"File not found: {_describe(p, expected)}")
    if p.is_dir():
        raise CheckpointError(f"{_describe(p, expected)} is a folder, not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"Cannot read {_describe(p, expected)}: {exc.strerror or exc}") from exc
    if not data:
        raise CheckpointError(f"{_describe(p, expected)} is empty (0 bytes)")
    if data.startswith(XZ_MAGIC):
        data = _xz_decompress(data, p, expected)
    header = data[:2]
    if header != ZIP_MAGIC and header in HEADER_VERSIONS:
        data = ZIP_MAGIC + data[2:]  # version-stamped SoVITS file: restore the zip magic before reading
    return header, data


def safe_torch_load(data: bytes, path: str | os.PathLike, expected: str) -> Any:
    """``torch.load`` of in-memory bytes with the weights-only unpickler; every failure becomes a CheckpointError."""
    p = Path(path)
    if not data.startswith(ZIP_MAGIC) and data[:1] != b"\x80":
        raise CheckpointError(
            f"{_describe(p, expected)} is not a PyTorch checkpoint (it starts with bytes {data[:8]!r})"
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Weights only load failed" in msg or "GLOBAL " in msg or "allowlisted" in msg:
            found = re.search(r"GLOBAL ([\w.]+)", msg) or re.search(r"function (\S+)", msg)
            culprit = found.group(1) if found else "objects other than tensors and plain data"
            raise CheckpointError(
                f"Refusing to load {_describe(p, expected)}: its pickle asks for {culprit}, which model weights never "
                "need. The file may be malicious; nothing in it was executed."
            ) from exc
        raise CheckpointError(f"{_describe(p, expected)} is corrupt or truncated: {msg}") from exc
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError, IndexError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{_describe(p, expected)} is corrupt or truncated: {msg}") from exc


def atomic_torch_save(obj: Any, path: str | os.PathLike, header: bytes = ZIP_MAGIC, official_names: bool = False) -> Path:
    """``torch.save`` into memory, replace the leading ``PK`` by ``header``, write via a temporary file + rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if official_names:
        torch.save(obj, buf, pickle_module=_OfficialPickleModule, pickle_protocol=2)
    else:
        torch.save(obj, buf)
    data = buf.getvalue()
    if header != ZIP_MAGIC:
        if len(header) != 2:
            raise ValueError("a version header is exactly two bytes")
        data = header + data[2:]
    return write_bytes_atomic(p, data)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def count_parameters(weight: Mapping[str, torch.Tensor], skip_buffers: tuple[str, ...] = ()) -> int:
    return sum(int(t.numel()) for k, t in weight.items() if not any(s in k for s in skip_buffers))


# --------------------------------------------------------------------------------------------------------------
# GPT (s1)
# --------------------------------------------------------------------------------------------------------------

GPT_EXPECTED = "a GPT-SoVITS GPT (s1) weights file, *.ckpt"
_S1_MODEL_FIELDS = ("vocab_size", "phoneme_vocab_size", "embedding_dim", "hidden_dim", "head", "n_layer")


@dataclass
class GPTCheckpoint:
    path: Path
    weight: "OrderedDict[str, torch.Tensor]"
    config: dict[str, Any]
    info: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_config(self) -> dict[str, Any]:
        return self.config["model"]

    @property
    def max_sec(self) -> float:
        return float(self.config.get("data", {}).get("max_sec", 54))

    @property
    def symbol_version(self) -> str:
        """v1 for s1longer-era GPTs (512-row phoneme table), else v2 (732 rows)."""
        rows = self.weight[GPT_PREFIX + "ar_text_embedding.word_embeddings.weight"].shape[0]
        return "v1" if rows < 732 else "v2"

    def model_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((k[len(GPT_PREFIX):], v) for k, v in self.weight.items())

    def num_parameters(self) -> int:
        return count_parameters(self.weight)

    def save(self, path: str | os.PathLike) -> Path:
        return save_gpt_checkpoint(path, self.weight, self.config, self.info, extra=self.extra)


def load_gpt_checkpoint(path: str | os.PathLike) -> GPTCheckpoint:
    """Load an exported s1 GPT ``.ckpt`` (or the official pretrained s1 files) without executing pickled code."""
    p = Path(path)
    _, data = read_file_bytes(p, GPT_EXPECTED)
    return _parse_gpt(safe_torch_load(data, p, GPT_EXPECTED), p)


def _parse_gpt(obj: Any, p: Path) -> GPTCheckpoint:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)} holds a {type(obj).__name__}, not a checkpoint dict")
    if "weight" not in obj and "state_dict" in obj:
        raise CheckpointError(
            f"{p} is a PyTorch-Lightning training checkpoint (logs/.../ckpt), not exported GPT weights; "
            "use the exported *-e<epoch>.ckpt from the GPT weights folder"
        )
    if _is_tensor_dict(obj.get("weight")) and any(k.startswith("enc_p.") for k in obj["weight"]):
        raise CheckpointError(f"{p} is a SoVITS (s2) weights file, not a GPT (s1) one: choose it as the SoVITS model")
    missing = [k for k in ("weight", "config") if k not in obj]
    if missing:
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)} lacks the entries {missing}; found {sorted(map(str, obj))}")
    weight, config = obj["weight"], obj["config"]
    if not _is_tensor_dict(weight):
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)}: 'weight' is not a mapping of names to tensors")
    if not all(k.startswith(GPT_PREFIX) for k in weight):
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)}: weight keys do not start with '{GPT_PREFIX}'")
    if isinstance(config, HParams):
        config = config.to_dict()
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)}: 'config' has no 'model' section")
    absent = [f for f in _S1_MODEL_FIELDS if f not in config["model"]]
    if absent:
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)}: config['model'] lacks {absent}")
    if GPT_PREFIX + "ar_text_embedding.word_embeddings.weight" not in weight:
        raise CheckpointError(f"{_describe(p, GPT_EXPECTED)}: no phoneme embedding in its weights")
    extra = {k: v for k, v in obj.items() if k not in ("weight", "config", "info")}
    return GPTCheckpoint(path=p, weight=OrderedDict(weight), config=dict(config), info=str(obj.get("info", "")), extra=extra)


def save_gpt_checkpoint(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    info: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write exported GPT weights as upstream does: fp16 tensors under ``model.``-prefixed keys, config, info."""
    weight: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, tensor in state_dict.items():
        name = key if key.startswith(GPT_PREFIX) else GPT_PREFIX + key
        weight[name] = tensor.detach().to("cpu", torch.float16)
    payload: OrderedDict[str, Any] = OrderedDict(weight=weight, config=dict(config), info=str(info))
    payload.update(extra or {})
    return atomic_torch_save(payload, path)


# --------------------------------------------------------------------------------------------------------------
# SoVITS (s2)
# --------------------------------------------------------------------------------------------------------------

SOVITS_EXPECTED = "a GPT-SoVITS SoVITS (s2) weights file, *.pth"


@dataclass
class SoVITSCheckpoint:
    path: Path
    header: bytes
    weight: dict[str, torch.Tensor]
    config: dict[str, Any]  # plain nested dict
    info: str
    model_version: str
    symbol_version: str
    official_name: str | None = None
    config_object: Any = None  # the HParams (or dict) exactly as stored, re-used when saving back
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pro(self) -> bool:
        return self.model_version in ("v2Pro", "v2ProPlus")

    @property
    def is_cfm(self) -> bool:
        """SoVITS v3/v4: decodes mels with a CFM and needs a vocoder."""
        return self.model_version in CFM_SOVITS_VERSIONS

    @property
    def is_lora(self) -> bool:
        """A v3/v4 LoRA export: only the trained tensors, applied on top of the official base model."""
        return self.header in LORA_HEADERS.values()

    @property
    def lora_rank(self) -> int:
        return int(self.extra.get("lora_rank") or 0)

    @property
    def base_model_name(self) -> str | None:
        """For a LoRA file: the official base model's path in upstream's pretrained_models folder."""
        return CFM_BASE_MODELS[self.model_version] if self.is_lora else None

    @property
    def base_model_hint(self) -> str | None:
        """For a LoRA file: the base path its training config recorded (train.pretrained_s2G), if any."""
        hint = (self.config.get("train") or {}).get("pretrained_s2G") if self.is_lora else None
        return str(hint) if hint else None

    def num_parameters(self) -> int:
        return count_parameters(self.weight, skip_buffers=("quantizer.",))

    def save(self, path: str | os.PathLike) -> Path:
        cfg = self.config_object if self.config_object is not None else self.config
        return save_sovits_checkpoint(path, self.weight, cfg, self.info, self.model_version, extra=self.extra)


def _first_8k_md5(data: bytes) -> str:
    return hashlib.md5(data[:8192]).hexdigest()


def detect_sovits_version(
    header: bytes, weight: Mapping[str, torch.Tensor], config: Mapping[str, Any], path: Path | None = None,
    official_version: str | None = None,
) -> tuple[str, str]:
    """(symbol_version, model_version) from the header, the keys and shapes, and the config, as upstream decides.

    v3/v4: header ``02`` (v3), ``03``/``04`` (v3/v4 LoRA), the official file hash (``official_version``), else any
    CFM key with the config's ``model.version`` deciding between v3 and v4 (v3 when it names neither, as upstream's
    size rule does for large plain files). Raises CheckpointError when the signals contradict.
    """
    where = str(path) if path else "this SoVITS file"
    header_info = HEADER_VERSIONS.get(header) if header != ZIP_MAGIC else None
    cfg_version = str((config.get("model") or {}).get("version") or config.get("version") or "")
    has_cfm = any(k.startswith(_V3V4_KEY_PREFIXES) for k in weight)
    header_cfm = bool(header_info and header_info[1] in CFM_SOVITS_VERSIONS)
    if header_cfm or has_cfm or official_version in CFM_SOVITS_VERSIONS:
        if header_cfm:
            ver = header_info[1]
        elif official_version in CFM_SOVITS_VERSIONS:
            ver = official_version
        else:
            ver = cfg_version if cfg_version in CFM_SOVITS_VERSIONS else "v3"
        if any(k.startswith(_VITS_DECODER_PREFIXES) for k in weight):
            raise UnsupportedVersionError(
                f"{where} is marked as SoVITS {ver} but also holds the v1/v2 decoder (flow / dec tensors): GPT-SoVITS "
                "never writes such a mixed file, and it is not supported yet"
            )
        lora_keys = [k for k in weight if ".lora_A." in k or ".lora_B." in k]
        if header_info and header_info[2]:
            if not lora_keys:
                raise CheckpointError(f"{where}: header {header.decode()!r} marks a SoVITS {ver} LoRA file, but it "
                                      "holds no LoRA tensors (lora_A / lora_B)")
        else:
            if lora_keys:
                raise CheckpointError(f"{where} holds LoRA tensors but lacks the LoRA header ('03' v3 / '04' v4)")
            if not has_cfm:
                raise CheckpointError(f"{where}: header/hash says SoVITS {ver} but the weights have no CFM (cfm.*)")
        return "v2", ver
    emb = weight.get("enc_p.text_embedding.weight")
    if emb is None:
        raise CheckpointError(f"{where} has no enc_p.text_embedding.weight: not SoVITS generator weights")
    symbol_version = "v1" if emb.shape[0] == 322 else "v2"
    has_sv = "sv_emb.weight" in weight
    if header_info:  # version-stamped file: the header is authoritative, the keys must agree
        model_version = header_info[1]
        if has_sv != (model_version in ("v2Pro", "v2ProPlus")):
            raise CheckpointError(
                f"{where}: header {header.decode()!r} says {model_version} but the weights "
                f"{'have' if has_sv else 'lack'} the speaker-embedding layer (sv_emb)"
            )
        if model_version in ("v2Pro", "v2ProPlus"):
            symbol_version = "v2"
        return symbol_version, model_version
    if has_sv:  # plain zip holding Pro weights (e.g. saved by another tool): decide Pro vs ProPlus
        if cfg_version in ("v2Pro", "v2ProPlus"):
            return "v2", cfg_version
        ups0 = weight.get("dec.ups.0.weight_v", weight.get("dec.ups.0.weight"))
        kernel = int(ups0.shape[-1]) if ups0 is not None else 16
        return "v2", ("v2ProPlus" if kernel == 20 else "v2Pro")
    # v1/v2 are decided by the text-embedding rows alone, as upstream's loaders do.
    return symbol_version, symbol_version


def load_sovits_checkpoint(path: str | os.PathLike) -> SoVITSCheckpoint:
    """Load exported SoVITS weights (``.pth``, or an xz-compressed ``.pth.xz``) without executing pickled code.

    Also reads the official pretrained generators (``s2G*.pth``, which keep ``enc_q``)."""
    p = Path(path)
    header, data = read_file_bytes(p, SOVITS_EXPECTED)
    if header != ZIP_MAGIC and header not in HEADER_VERSIONS:
        if header[:1] == b"\x80":
            pass  # legacy (non-zip) torch pickle
        else:
            raise CheckpointError(
                f"{_describe(p, SOVITS_EXPECTED)}: unknown file header {header!r} (neither a zip nor a GPT-SoVITS "
                f"version marker {sorted(h.decode() for h in HEADER_VERSIONS)})"
            )
    return _parse_sovits(safe_torch_load(data, p, SOVITS_EXPECTED), header, data, p)


def _parse_sovits(obj: Any, header: bytes, data: bytes, p: Path) -> SoVITSCheckpoint:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{_describe(p, SOVITS_EXPECTED)} holds a {type(obj).__name__}, not a checkpoint dict")
    weight = obj.get("weight")
    if weight is None and "model" in obj and _is_tensor_dict(obj["model"]):
        raise CheckpointError(
            f"{p} is a SoVITS training checkpoint (logs/.../G_*.pth); use the exported weights from the SoVITS weights folder"
        )
    if not _is_tensor_dict(weight):
        raise CheckpointError(f"{_describe(p, SOVITS_EXPECTED)}: no 'weight' mapping of tensors")
    if all(k.startswith(GPT_PREFIX) for k in weight):
        raise CheckpointError(f"{p} is a GPT (s1) weights file, not a SoVITS one: choose it as the GPT model")
    config_object = obj.get("config")
    if isinstance(config_object, HParams):
        config = config_object.to_dict()
    elif isinstance(config_object, Mapping):
        config = {k: (v.to_dict() if isinstance(v, HParams) else v) for k, v in config_object.items()}
    else:
        raise CheckpointError(f"{_describe(p, SOVITS_EXPECTED)}: no usable 'config' (found {type(config_object).__name__})")
    if not isinstance(config.get("model"), Mapping) or not isinstance(config.get("data"), Mapping):
        raise CheckpointError(f"{_describe(p, SOVITS_EXPECTED)}: config lacks its 'model' or 'data' section")
    official = OFFICIAL_SOVITS_HASHES.get(_first_8k_md5(data if header == ZIP_MAGIC else header + data[2:]))
    symbol_version, model_version = detect_sovits_version(header, weight, config, p, official[1] if official else None)
    extra = {k: v for k, v in obj.items() if k not in ("weight", "config", "info")}
    return SoVITSCheckpoint(
        path=p,
        header=header,
        weight=dict(weight),
        config=config,
        info=str(obj.get("info", "")),
        model_version=model_version,
        symbol_version=symbol_version,
        official_name=official[0] if official else None,
        config_object=config_object,
        extra=extra,
    )


def save_sovits_checkpoint(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    info: str,
    model_version: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write exported SoVITS weights as upstream's ``savee`` does.

    Drops every ``enc_q`` tensor, casts to fp16, stores the config as ``utils.HParams`` and stamps the version
    header of v2Pro (``05``) / v2ProPlus (``06``); v1/v2 and full v3/v4 files stay plain zips. A v3/v4 LoRA export
    (``extra={"lora_rank": r}``, LoRA tensors under peft's ``cfm.base_model.model.`` names) gets ``03`` / ``04``."""
    if model_version not in SUPPORTED_SOVITS_VERSIONS + CFM_SOVITS_VERSIONS:
        raise UnsupportedVersionError(
            f"cannot write SoVITS {model_version} weights; supported: {SUPPORTED_SOVITS_VERSIONS + CFM_SOVITS_VERSIONS}")
    weight = {k: v.detach().to("cpu", torch.float16) for k, v in state_dict.items() if "enc_q" not in k}
    payload: OrderedDict[str, Any] = OrderedDict()
    payload["weight"] = weight
    payload["config"] = HParams.from_mapping(config)
    payload["info"] = str(info)
    payload.update(extra or {})
    if model_version in CFM_SOVITS_VERSIONS and payload.get("lora_rank"):
        header = LORA_HEADERS[model_version]
    else:
        header = VERSION_HEADERS.get(model_version, ZIP_MAGIC)
    return atomic_torch_save(payload, path, header=header, official_names=True)


# --------------------------------------------------------------------------------------------------------------
# Speaker-verification model and generic state dicts
# --------------------------------------------------------------------------------------------------------------

SV_EXPECTED = "an ERes2NetV2 speaker-verification state dict, e.g. pretrained_eres2netv2w24s4ep4.ckpt"


def load_sv_state_dict(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    p = Path(path)
    _, data = read_file_bytes(p, SV_EXPECTED)
    return _parse_sv(safe_torch_load(data, p, SV_EXPECTED), p)


def _parse_sv(obj: Any, p: Path) -> "OrderedDict[str, torch.Tensor]":
    if isinstance(obj, Mapping) and "state_dict" in obj and _is_tensor_dict(obj["state_dict"]):
        obj = obj["state_dict"]
    if not _is_tensor_dict(obj):
        raise CheckpointError(f"{_describe(p, SV_EXPECTED)}: not a mapping of names to tensors")
    if "conv1.weight" not in obj or not any(k.startswith("layer1.") for k in obj):
        raise CheckpointError(f"{_describe(p, SV_EXPECTED)}: keys do not look like ERes2NetV2 (no conv1/layer1)")
    return OrderedDict(obj)


# --------------------------------------------------------------------------------------------------------------
# Vocoders of SoVITS v3 (BigVGAN folder) and v4 (vocoder.pth)

BIGVGAN_EXPECTED = (f"the v3 vocoder: a BigVGAN folder ({BIGVGAN_DIR}/) holding config.json and {BIGVGAN_WEIGHTS}")
V4_VOCODER_EXPECTED = f"the v4 vocoder state dict ({V4_VOCODER})"


def _is_bigvgan_state(obj: Any) -> bool:
    return _is_tensor_dict(obj) and ("conv_pre.weight_v" in obj or "conv_pre.weight" in obj) and any(
        ".activations." in k for k in obj)


def _is_v4_vocoder_state(obj: Any) -> bool:
    return _is_tensor_dict(obj) and "conv_pre.weight" in obj and "ups.0.weight" in obj and "conv_post.bias" in obj


def load_bigvgan_files(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, generator state dict)`` of a BigVGAN folder (or of its ``bigvgan_generator.pt[.xz]`` with the
    ``config.json`` beside it), read safely; the state is in weight-norm form as NVIDIA ships it."""
    import json

    p = Path(path)
    if p.is_dir():
        folder = p
        weights = next((folder / n for n in (BIGVGAN_WEIGHTS, BIGVGAN_WEIGHTS + ".xz") if (folder / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{folder} has no {BIGVGAN_WEIGHTS}: it is not {BIGVGAN_EXPECTED}")
    else:
        folder, weights = p.parent, p
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: it is not {BIGVGAN_EXPECTED}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict) or "upsample_rates" not in config or "num_mels" not in config:
        raise CheckpointError(f"{cfg_path} is not a BigVGAN config (no upsample_rates / num_mels)")
    _, data = read_file_bytes(weights, BIGVGAN_EXPECTED)
    obj = safe_torch_load(data, weights, BIGVGAN_EXPECTED)
    state = obj.get("generator") if isinstance(obj, Mapping) else None
    if not _is_bigvgan_state(state):
        raise CheckpointError(f"{_describe(weights, BIGVGAN_EXPECTED)}: no 'generator' state dict of a BigVGAN")
    return config, dict(state)


def load_v4_vocoder_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    p = Path(path)
    _, data = read_file_bytes(p, V4_VOCODER_EXPECTED)
    obj = safe_torch_load(data, p, V4_VOCODER_EXPECTED)
    if isinstance(obj, Mapping) and _is_tensor_dict(obj.get("weight")):
        obj = obj["weight"]
    if not _is_v4_vocoder_state(obj):
        raise CheckpointError(f"{_describe(p, V4_VOCODER_EXPECTED)}: keys do not look like the v4 HiFi-GAN vocoder "
                              "(conv_pre / ups / conv_post with bias)")
    return dict(obj)


def load_state_dict_file(path: str | os.PathLike, expected: str = "a PyTorch state dict") -> dict[str, Any]:
    """Safely load any torch-saved mapping (e.g. a pretrained discriminator ``{"weight": ...}``)."""
    p = Path(path)
    _, data = read_file_bytes(p, expected)
    obj = safe_torch_load(data, p, expected)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{_describe(p, expected)} holds a {type(obj).__name__}, not a mapping")
    return dict(obj)


ANY_EXPECTED = ("a GPT-SoVITS GPT .ckpt, SoVITS .pth, discriminator .pth, vocoder (bigvgan_generator.pt / vocoder.pth) "
                "or ERes2NetV2 speaker checkpoint")


def load_any_checkpoint(path: str | os.PathLike) -> GPTCheckpoint | SoVITSCheckpoint | "OrderedDict[str, torch.Tensor]" | dict:
    """Read a file once and return the matching typed checkpoint (used by ``python -m gsv_core.inspect``).

    Returns a GPTCheckpoint, a SoVITSCheckpoint, an ERes2NetV2 state dict, the raw mapping of a pretrained
    discriminator (``{"weight": {"discriminators....": ...}}``), or for a vocoder ``{"vocoder": "bigvgan",
    "generator": state}`` / ``{"vocoder": "v4", "state_dict": state}``."""
    p = Path(path)
    header, data = read_file_bytes(p, ANY_EXPECTED)
    if header != ZIP_MAGIC and header not in HEADER_VERSIONS and header[:1] != b"\x80":
        raise CheckpointError(f"{_describe(p, ANY_EXPECTED)}: not a PyTorch checkpoint (starts with {header!r})")
    obj = safe_torch_load(data, p, ANY_EXPECTED)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{_describe(p, ANY_EXPECTED)} holds a {type(obj).__name__}, not a checkpoint dict")
    weight = obj.get("weight")
    if _is_tensor_dict(weight):
        keys = list(weight)
        if all(k.startswith(GPT_PREFIX) for k in keys):
            return _parse_gpt(obj, p)
        if any(k.startswith("discriminators.") for k in keys):
            return dict(obj)
        return _parse_sovits(obj, header, data, p)
    if _is_bigvgan_state(obj.get("generator")):
        return {"vocoder": "bigvgan", "generator": dict(obj["generator"])}
    if _is_v4_vocoder_state(obj):
        return {"vocoder": "v4", "state_dict": dict(obj)}
    nested = obj.get("state_dict")
    if _is_tensor_dict(nested) and all(k.startswith(GPT_PREFIX) for k in nested):
        return _parse_gpt(obj, p)  # raises the "Lightning training checkpoint" message
    if _is_tensor_dict(obj.get("model")):
        return _parse_sovits(obj, header, data, p)  # raises the "SoVITS training checkpoint" message
    if _is_tensor_dict(obj) or _is_tensor_dict(nested):
        return _parse_sv(obj, p)
    raise CheckpointError(f"{_describe(p, ANY_EXPECTED)}: unrecognised contents (top-level keys {sorted(map(str, obj))[:8]})")
