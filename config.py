"""Typed defaults of GSV Playground: the one place every module reads its settings from.

Precedence, lowest first: the defaults below < ``my_config.py`` (the user's file, module-level UPPER_CASE names
equal to the field names, e.g. ``PORT = 9900``) < environment variables ``GSV_<FIELD>`` (e.g. ``GSV_PORT=9900``,
``GSV_DEVICE=cpu``) < command-line flags of the launcher/CLIs (applied with :func:`dataclasses.replace`).

Relative paths are resolved against the project root (the folder of this file) unless ``GSV_HOME`` names another
root, so the app behaves the same whatever the current directory is.

    from config import settings
    settings.bert_dir  # -> Path(".../pretrained_models/chinese-roberta-wwm-ext-large")
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

PROJECT_ROOT = Path(__file__).resolve().parent

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: where each feature model lives inside PRETRAINED_DIR unless its own setting names another place
PRETRAINED_LAYOUT = {
    "bert_dir": "chinese-roberta-wwm-ext-large",
    "hubert_dir": "chinese-hubert-base",
    "sv_path": "sv/pretrained_eres2netv2w24s4ep4.ckpt",
    "g2pw_dir": "G2PWModel",
    "whisper_dir": "faster-whisper",
}


@dataclass(frozen=True)
class Settings:
    # --- model files -------------------------------------------------------------------------------------------
    #: upstream's GPT_SoVITS/pretrained_models layout; the five below default to their place inside it, so pointing
    #: PRETRAINED_DIR at an existing GPT-SoVITS folder moves all of them (set one explicitly to override it alone)
    pretrained_dir: Path = Path("pretrained_models")
    bert_dir: Optional[Path] = None  # default: PRETRAINED_DIR/chinese-roberta-wwm-ext-large
    hubert_dir: Optional[Path] = None  # default: PRETRAINED_DIR/chinese-hubert-base
    sv_path: Optional[Path] = None  # default: PRETRAINED_DIR/sv/pretrained_eres2netv2w24s4ep4.ckpt
    g2pw_dir: Optional[Path] = None  # default: PRETRAINED_DIR/G2PWModel
    whisper_dir: Optional[Path] = None  # default: PRETRAINED_DIR/faster-whisper
    #: folders scanned for GPT (.ckpt) and SoVITS (.pth) weights, upstream's names included so a user can point
    #: GSV_HOME at an existing GPT-SoVITS folder
    gpt_weight_dirs: tuple[Path, ...] = (
        Path("weights/gpt"),
        Path("GPT_weights_v2ProPlus"),
        Path("GPT_weights_v2Pro"),
        Path("GPT_weights_v4"),
        Path("GPT_weights_v3"),
        Path("GPT_weights_v2"),
        Path("GPT_weights"),
    )
    sovits_weight_dirs: tuple[Path, ...] = (
        Path("weights/sovits"),
        Path("SoVITS_weights_v2ProPlus"),
        Path("SoVITS_weights_v2Pro"),
        Path("SoVITS_weights_v4"),
        Path("SoVITS_weights_v3"),
        Path("SoVITS_weights_v2"),
        Path("SoVITS_weights"),
    )
    #: an existing upstream GPT-SoVITS folder whose models the app uses: PRETRAINED_DIR becomes its
    #: GPT_SoVITS/pretrained_models (the feature models that followed PRETRAINED_DIR follow it; G2PW may also be its
    #: GPT_SoVITS/text/G2PWModel) and its GPT_weights*/SoVITS_weights* folders are listed after the app's own. The
    #: Models tab sets it, stored in LOCAL_SETTINGS (see :func:`gpt_sovits_changes`)
    gpt_sovits_dir: Optional[Path] = None
    #: settings chosen in the app (the Models tab's GPT-SoVITS folder): a layer between my_config.py and GSV_* vars
    local_settings: Path = Path("local_settings.json")
    # --- outputs -----------------------------------------------------------------------------------------------
    output_dir: Path = Path("output")
    reports_dir: Path = Path("reports")
    logs_dir: Path = Path("logs")
    #: one folder per finetuning experiment (data, features, training state, selection runs)
    experiments_dir: Path = Path("experiments")
    tts_log_csv: Path = Path("logs/tts_log.csv")
    refaudio_db: Path = Path("refaudio/library.sqlite3")
    #: one folder per voice dataset built by the Dataset tab / ``python -m gsv_core.dataset`` (recordings ->
    #: separated, denoised, sliced, normalised clips -> .list + cleaning report); readable by the app like its
    #: other folders
    datasets_dir: Path = Path("datasets")
    #: folders whose files a path typed in the UI or sent to the HTTP API may name (datasets, .list/CSV files,
    #: recordings), besides the app's own folders (outputs, experiments, reports, library, weights, pretrained
    #: models) and fresh uploads; anything else is refused (docs/security.md)
    data_dirs: tuple[Path, ...] = (Path("data"),)
    # --- compute -----------------------------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    #: auto = fp16 on CUDA; on the CPU bf16 where it is native (AVX-512 BF16 / AMX), else fp32 (gsv_core.device) |
    #: fp32 | fp16 (CUDA; the CPU runs fp32) | bf16 (CUDA Ampere+, or a CPU with native bf16: elsewhere emulated, slow)
    precision: str = "auto"
    cpu_threads: int = 0  # 0 = leave torch's default
    #: devices the long jobs (eval runs, RefAudio sweeps) spread their items over, one engine process each:
    #: "" = the one engine | all (every local GPU when there are two or more) | cuda:0,cuda:1 (gsv_core.pool)
    job_devices: str = ""
    #: CPU only: the GPT's projections as int8 (bf16-activation kernel on CPUs with native bf16, fbgemm's integer
    #: kernel elsewhere, AVX2 included; about 2-4x faster decoding than fp32; tokens may differ slightly from
    #: upstream's fp32 numerics, so it is off by default)
    gpt_int8: bool = False
    model_memory_budget_gb: float = 8.0  # models beyond this are evicted least-recently-used first
    # --- text --------------------------------------------------------------------------------------------------
    use_g2pw: bool = True  # used when its model folder exists; otherwise the pypinyin path with a notice
    user_dict_path: Path | None = None  # word -> pinyin overrides
    # --- limits (docs/security.md) -------------------------------------------------------------------------------
    max_upload_mb: int = 1024  # one uploaded file
    max_unpacked_mb: int = 2048  # what one zip or .xz checkpoint may unpack to (official files stay below 1 GiB)
    max_text_chars: int = 20000  # one text to synthesise (about 1.5 hours of speech)
    max_fragments: int = 1000  # pieces one text may be cut into
    max_audio_minutes: float = 240.0  # one input recording (checked from its header before decoding)
    max_sweep_items: int = 20000  # syntheses one RefAudio sweep may expand to
    # --- server ------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 9874
    port_fallback: bool = True  # a busy port moves to the next free one instead of failing
    share: bool = False
    #: "user:password" (several separated by ","): a login for the app; required with --share or a non-loopback
    #: host unless ALLOW_OPEN_ACCESS is set
    auth: str | None = None
    allow_open_access: bool = False

    def __post_init__(self):
        for name, rel in PRETRAINED_LAYOUT.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, Path(self.pretrained_dir) / rel)
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be one of auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, not {self.port}")
        for name in ("max_upload_mb", "max_unpacked_mb", "max_text_chars", "max_fragments", "max_sweep_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.auth is not None and self.auth.strip() and any(":" not in a for a in self.auth.split(",")):
            raise ValueError("auth must be 'user:password' (several separated by ',')")

    def resolved(self, root: Path) -> "Settings":
        """The same settings with every relative path made absolute under ``root``."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                changes[f.name] = value if value.is_absolute() else (root / value)
            elif isinstance(value, tuple) and value and isinstance(value[0], Path):
                changes[f.name] = tuple(v if v.is_absolute() else root / v for v in value)
        return dataclasses.replace(self, **changes)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _coerce(name: str, raw: Any, hint: Any) -> Any:
    """Turn a my_config value or an environment string into the field's type, with a clear error."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str:
            return str(raw)
        if hint is Path:
            return Path(str(raw)).expanduser()
        if origin is tuple:  # tuple[Path, ...]: os.pathsep-separated in the environment
            items = raw.split(os.pathsep) if isinstance(raw, str) else list(raw)
            return tuple(Path(str(i)).expanduser() for i in items if str(i))
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
            if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
                return None
            inner = next(a for a in args if a is not type(None))
            return _coerce(name, raw, inner)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name}: cannot use {raw!r} ({exc})") from exc
    raise ValueError(f"setting {name}: unsupported type {hint}")


def _overrides_from_module(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location("_gsv_my_config", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    names = {f.name for f in dataclasses.fields(Settings)}
    found: dict[str, Any] = {}
    for attr in dir(module):
        if attr.isupper() and attr.lower() in names:
            found[attr.lower()] = getattr(module, attr)
        elif attr.isupper() and not attr.startswith("_"):
            raise ValueError(f"{path}: unknown setting {attr} (known: {', '.join(sorted(n.upper() for n in names))})")
    return found


#: upstream's folders of finetuned weights, relative to a GPT-SoVITS folder
UPSTREAM_WEIGHT_DIRS = {
    "gpt_weight_dirs": ("GPT_weights_v2ProPlus", "GPT_weights_v2Pro", "GPT_weights_v4", "GPT_weights_v3",
                        "GPT_weights_v2", "GPT_weights"),
    "sovits_weight_dirs": ("SoVITS_weights_v2ProPlus", "SoVITS_weights_v2Pro", "SoVITS_weights_v4",
                           "SoVITS_weights_v3", "SoVITS_weights_v2", "SoVITS_weights"),
}


def gpt_sovits_changes(settings: Settings, folder: Path, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The field values that make ``settings`` use the GPT-SoVITS folder ``folder`` (absolute): PRETRAINED_DIR =
    its GPT_SoVITS/pretrained_models; BERT, HuBERT, SV and G2PW follow it when they followed the previous pretrained
    folder (or lay in a previously used GPT-SoVITS folder) and are not named in ``keep``; G2PW is upstream's
    GPT_SoVITS/text/G2PWModel when only that exists; the folder's weight folders come after the app's own (those of
    a previously used folder are dropped). WHISPER_DIR stays where it is."""
    folder = Path(folder)
    old = Path(settings.gpt_sovits_dir) if settings.gpt_sovits_dir else None
    pre = folder / "GPT_SoVITS" / "pretrained_models"
    changes: dict[str, Any] = {"gpt_sovits_dir": folder, "pretrained_dir": pre}
    for name, rel in PRETRAINED_LAYOUT.items():
        current = Path(getattr(settings, name))
        if name == "whisper_dir" or name in keep:
            continue
        if current == Path(settings.pretrained_dir) / rel or (old is not None and current.is_relative_to(old)):
            changes[name] = pre / rel
    upstream_g2pw = folder / "GPT_SoVITS" / "text" / "G2PWModel"
    if "g2pw_dir" in changes and not changes["g2pw_dir"].is_dir() and upstream_g2pw.is_dir():
        changes["g2pw_dir"] = upstream_g2pw
    for name, names in UPSTREAM_WEIGHT_DIRS.items():
        own = tuple(Path(d) for d in getattr(settings, name) if old is None or not Path(d).is_relative_to(old))
        changes[name] = own + tuple(folder / n for n in names if folder / n not in own)
    return changes


def _local_layer(path: Path) -> dict[str, Any]:
    """The settings the app stored in LOCAL_SETTINGS (JSON; only ``gpt_sovits_dir`` so far); {} when absent or
    unreadable (a damaged file must not stop the app)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    folder = data.get("gpt_sovits_dir") if isinstance(data, dict) else None
    return {"gpt_sovits_dir": Path(folder)} if isinstance(folder, str) and folder.strip() else {}


def load_settings(environ: Mapping[str, str] | None = None, my_config: Path | None = None) -> Settings:
    """Build the settings from defaults, ``my_config.py``, the app's LOCAL_SETTINGS file and ``GSV_*`` environment
    variables."""
    environ = os.environ if environ is None else environ
    root = Path(environ.get("GSV_HOME", PROJECT_ROOT)).expanduser().resolve()
    hints = _field_types()
    values: dict[str, Any] = {}
    module_path = my_config if my_config is not None else Path(environ.get("GSV_MY_CONFIG", PROJECT_ROOT / "my_config.py"))
    for name, raw in _overrides_from_module(module_path).items():
        values[name] = _coerce(name, raw, hints[name])
    explicit = set(values)
    local = Path(environ.get("GSV_LOCAL_SETTINGS", values.get("local_settings", Settings.local_settings)))
    values.update(_local_layer(local if local.is_absolute() else root / local))
    for f in dataclasses.fields(Settings):
        key = "GSV_" + f.name.upper()
        if key in environ:
            values[f.name] = _coerce(f.name, environ[key], hints[f.name])
            explicit.add(f.name)
    settings = Settings(**values).resolved(root)
    if settings.gpt_sovits_dir is not None:
        changes = gpt_sovits_changes(settings, settings.gpt_sovits_dir.resolve(), keep=tuple(explicit))
        if "GSV_PRETRAINED_DIR" in environ:  # the environment still wins over the app's choice: weights only
            changes = {k: v for k, v in changes.items() if k in ("gpt_sovits_dir", *UPSTREAM_WEIGHT_DIRS)}
        settings = dataclasses.replace(settings, **changes)
    return settings


settings: Settings = load_settings()
