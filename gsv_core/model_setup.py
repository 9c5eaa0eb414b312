"""First run: every pretrained file the app can use, present or missing, fetched on request, or taken from an
existing GPT-SoVITS folder. The Models tab (pages/models.py) is this module's UI; ``python -m gsv_core.download``
is its command line.

    rows = inventory(settings)                      # BERT, HuBERT, SV, G2PW, each version's base models, Whisper
    download(settings, "bert", progress=cb, cancel=event)   # huggingface_hub; resumes; GSVError when offline
    use_gpt_sovits_folder(settings, "D:/GPT-SoVITS")        # validate, remember (LOCAL_SETTINGS), apply now

Using a GPT-SoVITS folder changes the app's one shared :class:`config.Settings` object in place (the tabs, the
services and the engine all hold it), so the model lists, the model-folder rule (:mod:`gsv_core.weights`) and the
path policy (:mod:`gsv_core.paths`) take the folder's files from the next request on, without a restart.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from . import download as D
from .errors import GSVError
from .fileio import write_text_atomic
from .messages import keyed

DownloadCancelled = D.DownloadCancelled
Progress = Callable[[float, str], None]
WHISPER_PREFIX = "whisper:"
_lock = threading.Lock()  # one download or folder change at a time per process


class ModelSetupError(GSVError):
    """A download that failed, an unknown item, or a folder that is not a GPT-SoVITS folder."""


@dataclass(frozen=True)
class ModelEntry:
    """One row of the Models tab: an item of :mod:`gsv_core.download` or a Whisper size."""

    key: str  # "bert", "v2ProPlus", "whisper:large-v3": what :func:`download` takes
    name: str  # "BERT folder"
    group: str  # feature | base | asr
    purpose: str  # English: what needs it
    state: str  # present | partial | missing
    path: Path  # its folder or file (absolute; the page shows it relative)
    size: int  # bytes present
    missing: tuple[str, ...] = ()  # required files absent (names), when partial
    training_missing: tuple[str, ...] = ()  # files only finetuning needs (discriminators), absent

    @property
    def present(self) -> bool:
        return self.state == "present"


def human_size(n: int) -> str:
    return D._human(n)


def _item_entry(settings: Any, item: D.Item) -> ModelEntry:
    st = D.item_status(item, settings)
    group = "feature" if item.setting is not None or item.archive is not None else "base"
    where = D._locations(item, settings)
    path = where[0] if len(where) == 1 else (Path(settings.pretrained_dir) / item.root if item.root else
                                            Path(settings.pretrained_dir))
    return ModelEntry(item.key, item.label, group, item.needed_for, st.state, path, st.size,
                      tuple(D._short_name(item, m) for m in st.missing) if st.state == "partial" else (),
                      tuple(st.optional_missing))


def _whisper_entries(settings: Any) -> list[ModelEntry]:
    from .asr import whisper_models

    out = []
    for name, state, size, folder in whisper_models.status(Path(settings.whisper_dir)):
        out.append(ModelEntry(WHISPER_PREFIX + name, f"Whisper {name}", "asr",
                              "speech recognition (ASR tab, dataset transcription, reference text); faster-whisper",
                              state, Path(folder), size))
    return out


def inventory(settings: Any) -> list[ModelEntry]:
    """Every pretrained file the app can use: the feature models (BERT, HuBERT, SV, G2PW), the base models of each
    version (v1 ... v4, vocoders included) and the recommended Whisper sizes (plus any other Whisper folder
    found), each present / partial / missing where the settings point."""
    return [*(_item_entry(settings, item) for item in D.ITEMS), *_whisper_entries(settings)]


def entry(settings: Any, key: str) -> ModelEntry:
    for e in inventory(settings):
        if e.key == key:
            return e
    raise ModelSetupError(f"There is no model item {key!r}; choose one from the list.")


def _host() -> str:
    from urllib.parse import urlparse

    return urlparse(D._endpoint()).netloc or D._endpoint()


def _display(settings: Any, path: Path) -> str:
    """``path`` relative to the pretrained folder's parent ("pretrained_models/..."), never the host's full path."""
    base = Path(settings.pretrained_dir)
    shown = D._display(Path(path), base)
    return shown if not Path(shown).is_absolute() else Path(path).name


def _offline(settings: Any, name: str, reason: str, path: Path) -> ModelSetupError:
    return keyed(ModelSetupError, "download.offline", host=_host(), name=name, reason=reason,
                 folder=_display(settings, path))


def download(settings: Any, key: str, progress: Optional[Progress] = None,
             cancel: Optional[threading.Event] = None, endpoint: Optional[str] = None,
             training_files: bool = True) -> ModelEntry:
    """Fetch what is missing of item ``key`` (a :data:`gsv_core.download.ITEMS` key, or ``whisper:<size>``) from the
    Hugging Face Hub into where the settings point; an interrupted download resumes. ``progress(fraction, text)``
    follows the bytes; ``cancel`` stops it (:class:`gsv_core.download.DownloadCancelled`; Whisper stops only
    between files). Offline (no network or HF_HUB_OFFLINE=1): a keyed ``download.offline`` error naming the folder
    the files can be copied to by hand. Returns the item's new state."""
    report = progress or (lambda fraction, text: None)
    if not _lock.acquire(blocking=False):
        raise keyed(ModelSetupError, "job.busy", what="a model download")
    try:
        if key.startswith(WHISPER_PREFIX):
            return _download_whisper(settings, key[len(WHISPER_PREFIX):], report, endpoint)
        try:
            item = D.ITEMS_BY_KEY[D._canonical_key(key)]
        except KeyError:
            raise ModelSetupError(f"There is no model item {key!r}; choose one from the list.") from None
        before = _item_entry(settings, item)
        if before.present and (not training_files or not before.training_missing):
            report(1.0, f"{item.label}: already present")
            return before
        if D._offline_mode():
            raise _offline(settings, item.label, "HF_HUB_OFFLINE=1", before.path)
        report(0.0, f"{item.label}: connecting to {_host()}")
        try:
            D.fetch_item(item, settings, endpoint=endpoint, training_files=training_files, progress=report,
                         cancel=cancel)
        except D.FetchError as exc:
            if exc.network:
                raise _offline(settings, item.label, str(exc), before.path) from None
            raise ModelSetupError(f"{item.label} could not be downloaded: {exc}") from None
        report(1.0, f"{item.label}: done")
        return _item_entry(settings, item)
    finally:
        _lock.release()


def _download_whisper(settings: Any, size: str, report: Progress, endpoint: Optional[str]) -> ModelEntry:
    from .asr import whisper_models

    whisper_dir = Path(settings.whisper_dir)
    try:
        size = whisper_models.check_size(size)
    except GSVError as exc:
        raise ModelSetupError(str(exc)) from None
    target = whisper_models.folder(whisper_dir, size)
    if not whisper_models.present(whisper_dir, size):
        if D._offline_mode():
            raise _offline(settings, f"Whisper {size}", "HF_HUB_OFFLINE=1", target)
        repo = whisper_models.repo_of(size)
        report(0.05, f"Whisper {size}: downloading {repo} (no byte count for this one; it may take minutes)")
        try:
            whisper_models.fetch(whisper_dir, size, endpoint)
        except GSVError as exc:
            raise ModelSetupError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - huggingface_hub's errors become one readable reason
            reason = D._classify(exc, repo, "model.bin", endpoint or D._endpoint())
            if reason.network:
                raise _offline(settings, f"Whisper {size}", str(reason), target) from None
            raise ModelSetupError(f"Whisper {size} could not be downloaded: {reason}") from None
    report(1.0, f"Whisper {size}: done")
    return next(e for e in _whisper_entries(settings) if e.key == WHISPER_PREFIX + size)


# -- an existing GPT-SoVITS folder ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FolderReport:
    folder: Path  # the GPT-SoVITS folder (absolute)
    pretrained: int  # items of gsv_core.download present in it
    gpt: int  # finetuned GPT files in its GPT_weights* folders
    sovits: int  # finetuned SoVITS files in its SoVITS_weights* folders


def gpt_sovits_root(raw: Any) -> Path:
    """The GPT-SoVITS folder named by ``raw`` (the folder itself, its GPT_SoVITS subfolder or its
    GPT_SoVITS/pretrained_models); a keyed ``download.folder_invalid`` error otherwise, the same whether the path
    exists or not."""
    text = str(raw or "").strip().strip('"').strip("'")
    name = Path(text).name or text or "(empty)"
    if not text or "\x00" in text:
        raise keyed(ModelSetupError, "download.folder_invalid", name=name)
    try:
        p = Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        raise keyed(ModelSetupError, "download.folder_invalid", name=name) from None
    for candidate in (p, p.parent, p.parent.parent):
        try:
            if (candidate / "GPT_SoVITS" / "pretrained_models").is_dir():
                return candidate
        except OSError:
            continue
    raise keyed(ModelSetupError, "download.folder_invalid", name=name)


def _report(settings: Any, folder: Path) -> FolderReport:
    from .weights import GPT_SUFFIXES, SOVITS_SUFFIXES, _folder_files
    from config import UPSTREAM_WEIGHT_DIRS

    n = sum(1 for item in D.ITEMS if D.item_status(item, settings).state == "present"
            and Path(D.item_root(item, settings)).is_relative_to(folder))
    gpt = _folder_files([folder / d for d in UPSTREAM_WEIGHT_DIRS["gpt_weight_dirs"]], GPT_SUFFIXES, "GPT")
    sovits = _folder_files([folder / d for d in UPSTREAM_WEIGHT_DIRS["sovits_weight_dirs"]], SOVITS_SUFFIXES, "SoVITS")
    return FolderReport(folder, n, len(gpt), len(sovits))


def saved_gpt_sovits_folder(settings: Any) -> Optional[Path]:
    """The GPT-SoVITS folder the app uses (from my_config, the environment or the Models tab), or None."""
    folder = getattr(settings, "gpt_sovits_dir", None)
    return Path(folder) if folder else None


def _write_local(settings: Any, folder: Optional[Path]) -> None:
    path = Path(settings.local_settings)
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    except (OSError, ValueError):
        pass
    if folder is None:
        data.pop("gpt_sovits_dir", None)
    else:
        data["gpt_sovits_dir"] = str(folder)
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def apply_in_place(settings: Any, changes: dict[str, Any]) -> None:
    """Set fields of the app's frozen Settings object where every tab, service and engine already holds it (the
    one place the app changes its settings while running; only the model folders are changed this way)."""
    for name, value in changes.items():
        object.__setattr__(settings, name, value)


def use_gpt_sovits_folder(settings: Any, raw: Any, remember: bool = True) -> FolderReport:
    """Use the models of the GPT-SoVITS folder ``raw`` from now on: checked (:func:`gpt_sovits_root`), stored in
    LOCAL_SETTINGS (read again at the next start) and applied to ``settings`` in place (:func:`config.
    gpt_sovits_changes`): its pretrained models, its G2PW and its GPT_weights*/SoVITS_weights* folders are listed
    and allowed as model folders from the next request on."""
    from config import gpt_sovits_changes

    folder = gpt_sovits_root(raw)
    with _lock:
        if remember:
            _write_local(settings, folder)
        apply_in_place(settings, gpt_sovits_changes(settings, folder))
    return _report(settings, folder)


def forget_gpt_sovits_folder(settings: Any) -> None:
    """Stop remembering the folder (LOCAL_SETTINGS); the app's own pretrained folder is used again at the next
    start (this run keeps listing the folder's models)."""
    with _lock:
        _write_local(settings, None)


__all__ = ["DownloadCancelled", "FolderReport", "ModelEntry", "ModelSetupError", "WHISPER_PREFIX", "apply_in_place", "download", "entry",
           "forget_gpt_sovits_folder", "gpt_sovits_root", "human_size", "inventory", "saved_gpt_sovits_folder",
           "use_gpt_sovits_folder"]
