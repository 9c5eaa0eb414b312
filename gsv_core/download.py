"""``python -m gsv_core.download``: fetch the official pretrained files, or list what is present.

The files come from the Hugging Face Hub with ``huggingface_hub`` (its own tqdm progress bars; an interrupted
download resumes where it stopped) into the pretrained folder of the settings, in the layout of upstream's
``GPT_SoVITS/pretrained_models``:

    python -m gsv_core.download --list                    # every item: present / partial / missing, size, use
    python -m gsv_core.download bert hubert sv v2ProPlus  # these items
    python -m gsv_core.download --version v2Pro           # everything v2Pro synthesis and finetuning need
    python -m gsv_core.download all --dest D:/models --endpoint https://hf-mirror.example
    python -m gsv_core.download --asr large-v3           # a faster-whisper (CTranslate2) model -> WHISPER_DIR/large-v3
    python -m gsv_core.download --separator bs-roformer  # a UVR separation model -> PRETRAINED_DIR/uvr

Items: ``bert`` (chinese-roberta-wwm-ext-large/), ``hubert`` (chinese-hubert-base/), ``sv`` (the ERes2NetV2 speaker
model), ``g2pw`` (G2PWModel/, shipped as a zip and extracted), and the s1/s2 pretrained weights of ``v1``, ``v2``,
``v2Pro`` and ``v2ProPlus`` (the discriminators ``s2D*`` are fetched too unless ``--inference-only``: only
finetuning needs them), ``v3`` (s1v3.ckpt, s2Gv3.pth and the BigVGAN vocoder folder) and ``v4`` (s1v3.ckpt,
gsv-v4-pretrained/s2Gv4.pth and its vocoder.pth; v3/v4 finetuning trains LoRA adapters and needs no discriminator). When the network is unreachable or ``HF_HUB_OFFLINE=1`` is set, the command says what could
not be fetched and where to put the files by hand, and exits with status 1.

The engine and the UI use :func:`missing_items` and :func:`describe_missing` to explain what is absent.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence, TextIO

from huggingface_hub import hf_hub_download

from .errors import GSVError
from .formats import safezip
from .versions import VERSIONS as VERSION_TABLE

MODELS_REPO = "lj1995/GPT-SoVITS"
G2PW_REPO = "XXXXRT/GPT-SoVITS-Pretrained"
DEFAULT_ENDPOINT = "https://huggingface.co"
COMMAND = "python -m gsv_core.download"



@dataclass(frozen=True)
class Item:
    """One downloadable unit: a model folder, a single file, or the pretrained weights of one version."""

    key: str  # its name on the command line
    label: str  # "BERT folder", "SV model", ...
    needed_for: str  # which feature needs it
    root: str  # folder or file it occupies, relative to the pretrained folder (upstream layout)
    files: tuple = ()  # required files, relative to the pretrained folder (entries may be tuples of alternatives)
    optional: tuple = ()  # files only finetuning needs (discriminators)
    repo_id: str = MODELS_REPO
    setting: str | None = None  # Settings field that says where ``root`` lives instead (bert_dir, sv_path, ...)
    archive: str | None = None  # file in the repo that is a zip holding ``root`` (G2PW)
    #: entries of ``files`` that are a v3/v4 vocoder (needed, but not GPT/SoVITS weights to list as voices).
    #: Version items list the GPT first and the SoVITS generator second (the finetune stages rely on it).
    vocoder: tuple = ()


def _first(entry: Any) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def _names(entry: Any) -> tuple[str, ...]:
    return entry if isinstance(entry, tuple) else (entry,)


_BERT = "chinese-roberta-wwm-ext-large"
_HUBERT = "chinese-hubert-base"
_SV = "sv/pretrained_eres2netv2w24s4ep4.ckpt"
_G2PW = "G2PWModel"
_BIGVGAN = "models--nvidia--bigvgan_v2_24khz_100band_256x"

ITEMS: tuple[Item, ...] = (
    Item(
        key="bert",
        label="BERT folder",
        needed_for="Chinese text features in synthesis and finetuning (all versions); G2PW's tokenizer",
        root=_BERT,
        files=tuple(f"{_BERT}/{n}" for n in ("config.json", "tokenizer.json", "pytorch_model.bin")),
        setting="bert_dir",
    ),
    Item(
        key="hubert",
        label="HuBERT folder",
        needed_for="reference audio -> prompt tokens in synthesis; dataset preparation for finetuning (all versions)",
        root=_HUBERT,
        files=tuple(f"{_HUBERT}/{n}" for n in ("config.json", "preprocessor_config.json", "pytorch_model.bin")),
        setting="hubert_dir",
    ),
    Item(
        key="sv",
        label="SV model",
        needed_for="speaker embedding of v2Pro / v2ProPlus (synthesis and finetuning)",
        root=_SV,
        files=(_SV,),
        setting="sv_path",
    ),
    Item(
        key="g2pw",
        label="G2PW model",
        needed_for="Chinese polyphone disambiguation for v2 and later (without it: pypinyin, less accurate)",
        root=_G2PW,
        files=(
            (f"{_G2PW}/g2pW.onnx", f"{_G2PW}/g2pw.onnx"),
            f"{_G2PW}/config.py",
            f"{_G2PW}/POLYPHONIC_CHARS.txt",
            f"{_G2PW}/MONOPHONIC_CHARS.txt",
            f"{_G2PW}/bopomofo_to_pinyin_wo_tune_dict.json",
            f"{_G2PW}/char_bopomofo_dict.json",
        ),
        repo_id=G2PW_REPO,
        setting="g2pw_dir",
        archive="G2PWModel.zip",
    ),
    Item(
        key="v1",
        label="v1 pretrained weights",
        needed_for="v1 base models: zero-shot v1 synthesis and v1 finetuning (s2D only for finetuning)",
        root="",
        files=("s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt", "s2G488k.pth"),
        optional=("s2D488k.pth",),
    ),
    Item(
        key="v2",
        label="v2 pretrained weights",
        needed_for="v2 base models: zero-shot v2 synthesis and v2 finetuning (s2D only for finetuning)",
        root="gsv-v2final-pretrained",
        files=(
            "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
            "gsv-v2final-pretrained/s2G2333k.pth",
        ),
        optional=("gsv-v2final-pretrained/s2D2333k.pth",),
    ),
    Item(
        key="v2Pro",
        label="v2Pro pretrained weights",
        needed_for="v2Pro base models: zero-shot v2Pro synthesis and v2Pro finetuning (s2D only for finetuning)",
        root="v2Pro",
        files=("s1v3.ckpt", "v2Pro/s2Gv2Pro.pth"),
        optional=("v2Pro/s2Dv2Pro.pth",),
    ),
    Item(
        key="v2ProPlus",
        label="v2ProPlus pretrained weights",
        needed_for="v2ProPlus base models: zero-shot v2ProPlus synthesis and finetuning (s2D only for finetuning)",
        root="v2Pro",
        files=("s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth"),
        optional=("v2Pro/s2Dv2ProPlus.pth",),
    ),
    Item(
        key="v3",
        label="v3 pretrained weights",
        needed_for="v3 base models + BigVGAN vocoder: zero-shot v3 synthesis (24 kHz) and v3 LoRA finetuning",
        root="",
        files=("s1v3.ckpt", "s2Gv3.pth", f"{_BIGVGAN}/config.json", f"{_BIGVGAN}/bigvgan_generator.pt"),
        vocoder=(f"{_BIGVGAN}/config.json", f"{_BIGVGAN}/bigvgan_generator.pt"),
    ),
    Item(
        key="v4",
        label="v4 pretrained weights",
        needed_for="v4 base models + vocoder: zero-shot v4 synthesis (48 kHz) and v4 LoRA finetuning",
        root="gsv-v4-pretrained",
        files=("s1v3.ckpt", "gsv-v4-pretrained/s2Gv4.pth", "gsv-v4-pretrained/vocoder.pth"),
        vocoder=("gsv-v4-pretrained/vocoder.pth",),
    ),
)

ITEMS_BY_KEY = {item.key: item for item in ITEMS}
#: everything one version needs for synthesis and finetuning
VERSION_NEEDS: dict[str, tuple[str, ...]] = {
    "v1": ("bert", "hubert", "v1"),
    "v2": ("bert", "hubert", "g2pw", "v2"),
    "v2Pro": ("bert", "hubert", "g2pw", "sv", "v2Pro"),
    "v2ProPlus": ("bert", "hubert", "g2pw", "sv", "v2ProPlus"),
    "v3": ("bert", "hubert", "g2pw", "v3"),
    "v4": ("bert", "hubert", "g2pw", "v4"),
}
#: the model versions (gsv_core.versions) whose files this downloader knows
VERSIONS = tuple(v for v in VERSION_TABLE if v in VERSION_NEEDS)


# ----------------------------------------------------------------------------------------------------------------
# where things are and what is there

def _base_dir(settings: Any, dest: str | os.PathLike | None) -> Path:
    if dest is not None:
        return Path(dest).expanduser().resolve()
    return Path(settings.pretrained_dir) if settings is not None else Path("pretrained_models")


def item_root(item: Item, settings: Any = None, dest: str | os.PathLike | None = None) -> Path:
    """Where the item's folder (or single file) is: under ``dest`` when given, else where the settings say."""
    if dest is None and item.setting is not None and settings is not None and getattr(settings, item.setting, None):
        return Path(getattr(settings, item.setting))
    return _base_dir(settings, dest) / item.root


def file_path(item: Item, rel: str, settings: Any = None, dest: str | os.PathLike | None = None) -> Path:
    """Local path of one of the item's files (``rel`` relative to the pretrained folder)."""
    if dest is None and item.setting is not None and settings is not None and getattr(settings, item.setting, None):
        base = Path(getattr(settings, item.setting))
        if rel == item.root:
            return base
        return base / PurePosixPath(rel).relative_to(item.root)
    return _base_dir(settings, dest) / rel


def _present(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


@dataclass
class ItemStatus:
    item: Item
    root: Path
    present: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # required files absent (relative names)
    optional_missing: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def state(self) -> str:
        if not self.missing:
            return "present"
        return "partial" if self.present else "missing"


def _entry_path(item: Item, entry: Any, settings: Any, dest: Any) -> Path | None:
    """The existing file for an entry (first alternative that exists), or None."""
    for name in _names(entry):
        p = file_path(item, name, settings, dest)
        if _present(p):
            return p
    return None


def item_status(item: Item, settings: Any = None, dest: str | os.PathLike | None = None) -> ItemStatus:
    status = ItemStatus(item, item_root(item, settings, dest))
    for group, missing in ((item.files, status.missing), (item.optional, status.optional_missing)):
        for entry in group:
            p = _entry_path(item, entry, settings, dest)
            if p is None:
                missing.append(_first(entry))
            else:
                status.present.append(p)
                status.size += p.stat().st_size
    return status


def missing_items(settings: Any, keys: Iterable[str] | None = None, dest: str | os.PathLike | None = None) -> list[Item]:
    """Items (all, or those named in ``keys``; a version name in ``keys`` means only its own weights) whose
    required files are not all present where ``settings`` points."""
    chosen = ITEMS if keys is None else [ITEMS_BY_KEY[_canonical_key(k)] for k in keys]
    return [item for item in chosen if item_status(item, settings, dest).state != "present"]


def _display(path: Path, base: Path) -> str:
    """``path`` as "pretrained_models/..." (relative to the pretrained folder's parent) when it is inside the
    pretrained folder, else absolute."""
    try:
        return (PurePosixPath(base.name) / PurePosixPath(path.relative_to(base).as_posix())).as_posix()
    except ValueError:
        return str(path)


def _locations(item: Item, settings: Any = None, dest: str | os.PathLike | None = None) -> list[Path]:
    """What to name for an item: its folder or file, or the files of a version's weights."""
    if item.setting is not None or item.archive is not None:
        return [item_root(item, settings, dest)]
    return [file_path(item, _first(f), settings, dest) for f in item.files]


def _short_name(item: Item, rel: str) -> str:
    """A missing file named inside its item's folder ("pytorch_model.bin"), or relative to the pretrained folder."""
    if (item.setting is not None or item.archive is not None) and item.root and rel != item.root:
        return PurePosixPath(rel).relative_to(item.root).as_posix()
    return rel


def describe_missing(item: Item, settings: Any = None) -> str:
    """One sentence for the UI/engine, e.g. "BERT folder pretrained_models/chinese-roberta-wwm-ext-large is
    missing: run python -m gsv_core.download bert". With ``settings`` the configured path is named (and a folder
    that holds only some of its files is called incomplete)."""
    base = _base_dir(settings, None)
    where = ", ".join(_display(p, base) for p in _locations(item, settings))
    if settings is not None:
        status = item_status(item, settings)
        if status.state == "partial":
            names = ", ".join(_short_name(item, m) for m in status.missing)
            return f"{item.label} {where} is incomplete (missing {names}): run {COMMAND} {item.key}"
    return f"{item.label} {where} is missing: run {COMMAND} {item.key}"


# ----------------------------------------------------------------------------------------------------------------
# downloading

class DownloadCancelled(GSVError):
    """The download was cancelled (what was fetched so far is kept: the next download resumes)."""


class FetchError(Exception):
    """A file of an item could not be fetched; ``network`` is True when nothing else can be fetched either."""

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network


def _network_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"),
                         ("requests", "Timeout"), ("urllib3.exceptions", "HTTPError")):
        try:
            mod = __import__(module, fromlist=[name])
            types.append(getattr(mod, name))
        except Exception:
            pass
    return tuple(types)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _offline_mode() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except Exception:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def _classify(exc: BaseException, repo_id: str, filename: str, endpoint: str) -> FetchError:
    """Turn whatever hf_hub_download raised into a readable reason (network problems end the whole run)."""
    from huggingface_hub import errors as hf_errors

    chain = _chain(exc)
    short = " ".join(str(exc).split())[:300] or type(exc).__name__

    def seen(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if seen(hf_errors.OfflineModeIsEnabled) or (isinstance(exc, hf_errors.LocalEntryNotFoundError) and _offline_mode()):
        return FetchError("offline mode is on (HF_HUB_OFFLINE=1), so nothing can be downloaded; unset HF_HUB_OFFLINE "
                          "to download, or place the files by hand", network=True)
    if seen(hf_errors.GatedRepoError):
        return FetchError(f"access to {repo_id} is restricted ({short}); log in with `hf auth login` or place the "
                          "files by hand")
    if seen(hf_errors.RepositoryNotFoundError):
        return FetchError(f"repository {repo_id} was not found at {endpoint} (is the --endpoint mirror complete?)")
    if isinstance(exc, hf_errors.LocalEntryNotFoundError) or seen(*_network_error_types()):
        root = " ".join(str(chain[-1]).split())[:300] or type(chain[-1]).__name__  # e.g. the DNS failure
        return FetchError(f"{endpoint} could not be reached (no network, a firewall or a proxy?): {root}",
                          network=True)
    if seen(hf_errors.RemoteEntryNotFoundError, hf_errors.RevisionNotFoundError):
        return FetchError(f"{filename} was not found in {repo_id} at {endpoint} (is the --endpoint mirror complete?)")
    if isinstance(exc, OSError) and not isinstance(exc, hf_errors.HfHubHTTPError) and exc.errno is not None:
        return FetchError(f"cannot write {filename} ({exc.strerror or exc}: {getattr(exc, 'filename', None) or ''})")
    if seen(hf_errors.HfHubHTTPError):
        return FetchError(f"the server answered with an error for {repo_id}/{filename}: {short}", network=True)
    return FetchError(f"{filename}: {type(exc).__name__}: {short}")


def _remove_empty_dirs(path: Path, stop: Path) -> None:
    """Remove ``path`` and its empty parents up to (not including) ``stop`` — left behind by a failed fetch."""
    try:
        path.relative_to(stop)
    except ValueError:
        return
    while path != stop and path.is_dir():
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def _progress_bar(report: Callable[[int, int | None], None], cancel: Any = None) -> type:
    """A tqdm class for ``hf_hub_download(tqdm_class=...)`` that draws nothing, reports (bytes done, total) and
    stops the download (:class:`DownloadCancelled`) once ``cancel`` (a threading.Event) is set; the partial file
    stays, so the next download resumes."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Bar(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._gsv_done = int(kwargs.get("initial") or 0)
            report(self._gsv_done, kwargs.get("total"))

        def update(self, n: Any = 1) -> Any:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("The download was cancelled; start it again to resume.")
            self._gsv_done += int(n or 0)
            report(self._gsv_done, getattr(self, "total", None))
            return super().update(n)

    return Bar


def _fetch_file(repo_id: str, filename: str, target: Path, staging: Path, endpoint: str | None,
                tqdm_class: Any = None) -> None:
    """Download ``filename`` of ``repo_id`` to ``target``. When ``target`` ends with ``filename`` the download
    goes straight there (``local_dir`` = the prefix); otherwise through ``staging`` (a stable folder, so an
    interrupted download still resumes), then moved."""
    parts = PurePosixPath(filename).parts
    direct = tuple(target.parts[-len(parts):]) == parts
    local_dir = Path(*target.parts[: -len(parts)]) if direct else staging
    new_dirs = [d for d in [target.parent, *target.parent.parents] if not d.exists()]
    hf_cache = local_dir / ".cache"
    had_cache = hf_cache.exists()
    had_local_dir = local_dir.exists()
    try:
        local_dir.mkdir(parents=True, exist_ok=True)
        extra = {"tqdm_class": tqdm_class} if tqdm_class is not None else {}
        got = hf_hub_download(repo_id, filename, local_dir=str(local_dir), endpoint=endpoint, **extra)
        got_path = Path(got)
        if got_path.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(got_path, target)
            except OSError:
                shutil.move(str(got_path), str(target))
    except Exception:
        for d in new_dirs:
            _remove_empty_dirs(d, local_dir)
        # huggingface_hub's bookkeeping folder: kept when it holds a partial download (to resume), else removed
        if not had_cache and hf_cache.is_dir() and not any(hf_cache.rglob("*.incomplete")):
            shutil.rmtree(hf_cache, ignore_errors=True)
        if not had_local_dir:
            _remove_empty_dirs(local_dir, local_dir.parent)
        raise


def _merge_move(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir():
            _merge_move(child, target)
        else:
            os.replace(child, target)


def _fetch_archive(item: Item, root: Path, endpoint: str | None, tqdm_class: Any = None) -> None:
    staging = root.parent / f".gsv-download-{item.key}"
    archive = staging / item.archive
    if not _present(archive):
        try:
            _fetch_file(item.repo_id, item.archive, archive, staging, endpoint, tqdm_class)
        except DownloadCancelled:
            raise
        except Exception as exc:
            raise _classify(exc, item.repo_id, item.archive, endpoint or _endpoint()) from None
    unpack = staging / "unpacked"
    shutil.rmtree(unpack, ignore_errors=True)
    try:
        try:
            safezip.extract(archive, unpack)
        except safezip.ZipError as exc:
            raise FetchError(str(exc)) from None
        marker_names = {PurePosixPath(n).name for n in _names(item.files[0])}
        found = [p.parent for p in sorted(unpack.rglob("*")) if p.is_file() and p.name in marker_names]
        if not found:
            raise FetchError(f"{item.archive} does not contain {' or '.join(sorted(marker_names))}")
    except FetchError as exc:
        # an unusable archive is not kept, so the next run downloads it afresh
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{exc} (the downloaded archive was removed)") from None
    except OSError as exc:
        shutil.rmtree(unpack, ignore_errors=True)
        raise FetchError(f"cannot extract {item.archive} ({exc.strerror or exc})") from None
    _merge_move(found[0], root)
    shutil.rmtree(staging, ignore_errors=True)


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:
        return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)


def fetch_item(
    item: Item, settings: Any = None, dest: str | os.PathLike | None = None, endpoint: str | None = None,
    training_files: bool = True, progress: Callable[[float, str], None] | None = None, cancel: Any = None,
) -> ItemStatus:
    """Download whatever of ``item`` is not there yet, then check that every expected file exists.

    ``progress(fraction, text)`` is told how far the item's files are (bytes, when the server says the size);
    setting ``cancel`` (a threading.Event) stops the download with :class:`DownloadCancelled`, keeping the partial
    file for the next try. Raises :class:`FetchError` with a readable reason.
    """
    def bar(index: int, count: int, name: str) -> Any:
        if progress is None and cancel is None:
            return None

        def report(done: int, total: int | None) -> None:
            if progress is None:
                return
            part = min(1.0, done / total) if total else 0.0
            size = f"{_human(done)} / {_human(total)}" if total else _human(done)
            progress((index + part) / count, f"{PurePosixPath(name).name} ({index + 1}/{count}): {size}")

        return _progress_bar(report, cancel)

    root = item_root(item, settings, dest)
    status = item_status(item, settings, dest)
    wanted_missing = status.missing + (status.optional_missing if training_files else [])
    if not wanted_missing:
        return status
    if item.archive is not None:
        _fetch_archive(item, root, endpoint, bar(0, 1, item.archive))
    else:
        staging = (root.parent if item.setting else _base_dir(settings, dest)) / f".gsv-download-{item.key}"
        entries = list(item.files) + (list(item.optional) if training_files else [])
        todo = [e for e in entries if _entry_path(item, e, settings, dest) is None]
        for index, entry in enumerate(todo):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("The download was cancelled; start it again to resume.")
            name = _first(entry)
            target = file_path(item, name, settings, dest)
            try:
                _fetch_file(item.repo_id, name, target, staging, endpoint, bar(index, len(todo), name))
            except DownloadCancelled:
                raise
            except Exception as exc:
                raise _classify(exc, item.repo_id, name, endpoint or _endpoint()) from None
        shutil.rmtree(staging, ignore_errors=True)
    after = item_status(item, settings, dest)
    still = after.missing + (after.optional_missing if training_files else [])
    if still:
        raise FetchError("the download finished but these files are still missing: " + ", ".join(still))
    return after


# ----------------------------------------------------------------------------------------------------------------
# command line

def _canonical_key(name: str) -> str:
    lowered = {k.lower(): k for k in ITEMS_BY_KEY}
    key = lowered.get(name.strip().lower())
    if key is None:
        raise KeyError(name)
    return key


def _human(n: int) -> str:
    if n <= 0:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _load_settings() -> Any:
    try:
        from config import settings
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from config import settings
    return settings


def print_list(settings: Any, dest: str | os.PathLike | None, out: TextIO) -> None:
    base = _base_dir(settings, dest)
    print(f"Pretrained models in {base}", file=out)
    print(f"{'item':<10} {'status':<8} {'size':>9}  what / needed for", file=out)
    for item in ITEMS:
        st = item_status(item, settings, dest)
        place = ", ".join(_display(p, base) for p in _locations(item, settings, dest))
        print(f"{item.key:<10} {st.state:<8} {_human(st.size):>9}  {item.label}: {place}", file=out)
        print(f"{'':<30}needed for: {item.needed_for}", file=out)
        if st.state == "partial":
            print(f"{'':<30}missing: {', '.join(st.missing)}", file=out)
        if st.optional_missing and st.state != "missing":
            print(f"{'':<30}for finetuning also: {', '.join(st.optional_missing)}", file=out)
    missing = [i.key for i in ITEMS if item_status(i, settings, dest).state != "present"]
    if missing:
        print(f"\nTo fetch what is missing: {COMMAND} {' '.join(missing)}", file=out)
    else:
        print("\nEverything is present.", file=out)
    print_extra_models(settings, dest, out)


def print_extra_models(settings: Any, dest: str | os.PathLike | None, out: TextIO) -> None:
    """The ASR (faster-whisper) and vocal separation (audio-separator) models: the Dataset and ASR tabs use them."""
    from .asr import whisper_models
    from .dataset import separation

    whisper_dir = Path(settings.whisper_dir) if dest is None else _base_dir(settings, dest) / "faster-whisper"
    print(f"\nASR models (faster-whisper, CTranslate2) in {_display(whisper_dir, _base_dir(settings, dest))}; "
          f"the ASR tab lists them by name", file=out)
    for name, state, size, _folder in whisper_models.status(whisper_dir):
        print(f"  {name:<18} {state:<8} {_human(size):>9}", file=out)
    print(f"  fetch one: {COMMAND} --asr large-v3   (any of: {', '.join(whisper_models.sizes())})", file=out)
    sep_dir = separation.model_dir(settings) if dest is None else _base_dir(settings, dest) / "uvr"
    print(f"\nVocal separation models (audio-separator) in {_display(sep_dir, _base_dir(settings, dest))}", file=out)
    have = set(separation.present_models(sep_dir))
    for m in separation.SEPARATION_MODELS:
        f = sep_dir / m.filename
        state = "present" if m.key in have else "missing"
        size = f.stat().st_size if state == "present" else 0
        print(f"  {m.key:<18} {state:<8} {_human(size):>9}  {m.label} ({m.filename})", file=out)
    for other in sorted(have - {m.key for m in separation.SEPARATION_MODELS}):
        print(f"  {other:<18} {'present':<8} {_human((sep_dir / other).stat().st_size):>9}", file=out)
    print(f"  fetch one: {COMMAND} --separator bs-roformer   (or another model file name audio-separator lists)",
          file=out)


def fetch_extra(asr: Sequence[str], separators: Sequence[str], settings: Any, dest: Any, endpoint: str,
                out: TextIO, err: TextIO) -> int:
    """``--asr`` / ``--separator``: each through its library's own downloader; 0 when all are present after."""
    from .asr import whisper_models
    from .dataset import separation

    failed = 0
    whisper_dir = Path(settings.whisper_dir) if dest is None else _base_dir(settings, dest) / "faster-whisper"
    for size in asr:
        try:
            size = whisper_models.check_size(size)
        except Exception as exc:  # noqa: BLE001 - an unknown name: one line
            print(f"  asr {size}: {exc}", file=err)
            failed += 1
            continue
        if whisper_models.present(whisper_dir, size):
            print(f"  asr {size}: already present", file=out)
            continue
        repo = whisper_models.repo_of(size)
        print(f"  asr {size}: fetching {repo} into {whisper_models.folder(whisper_dir, size)} ...", file=out, flush=True)
        try:
            whisper_models.fetch(whisper_dir, size, endpoint if endpoint != DEFAULT_ENDPOINT else None)
            print(f"  asr {size}: done", file=out)
        except Exception as exc:  # noqa: BLE001 - every reason becomes one readable line
            reason = _classify(exc, repo, "model.bin", endpoint) if not isinstance(exc, GSVError) else exc
            print(f"  asr {size}: FAILED: {reason}", file=err)
            print(f"      by hand: put model.bin, config.json, tokenizer.json and vocabulary.* of "
                  f"{endpoint.rstrip('/')}/{repo} into {whisper_models.folder(whisper_dir, size)}", file=err)
            failed += 1
    sep_dir = separation.model_dir(settings) if dest is None else _base_dir(settings, dest) / "uvr"
    for name in separators:
        try:
            filename = separation.resolve_filename(name)
        except GSVError as exc:
            print(f"  separator {name}: {exc}", file=err)
            failed += 1
            continue
        if separation.is_present(sep_dir, filename):
            print(f"  separator {name}: already present ({filename})", file=out)
            continue
        if _offline_mode():
            print(f"  separator {name}: FAILED: offline mode is on (HF_HUB_OFFLINE=1); unset it to download",
                  file=err)
            failed += 1
            continue
        print(f"  separator {name}: fetching {filename} with audio-separator's downloader into {sep_dir} ...",
              file=out, flush=True)
        try:
            separation.download(sep_dir, filename)
            print(f"  separator {name}: done", file=out)
        except GSVError as exc:
            print(f"  separator {name}: FAILED: {exc}", file=err)
            failed += 1
    return 1 if failed else 0


def _manual_instructions(failed: list[tuple[Item, FetchError]], settings: Any, dest: Any, endpoint: str,
                         training_files: bool) -> list[str]:
    base = _base_dir(settings, dest)

    def shown(p: Path) -> str:
        try:
            return PurePosixPath(p.relative_to(base)).as_posix()
        except ValueError:
            return str(p)

    lines = [f"To place the files by hand, download them (a browser will do) and put them at these paths inside {base}:"]
    for item, _ in failed:
        repo_url = f"{endpoint.rstrip('/')}/{item.repo_id}"
        if item.archive is not None:
            root = item_root(item, settings, dest)
            lines.append(f"  {item.key}: unzip {repo_url}/resolve/main/{item.archive} and name its folder "
                         f"{shown(root)}, so that these files exist:")
            for entry in item.files:
                names = [PurePosixPath(a).name for a in _names(entry)]
                rel = shown(root / names[0])
                lines.append(f"      {rel}" + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))
            continue
        lines.append(f"  {item.key}:")
        entries = list(item.files) + (list(item.optional) if training_files else [])
        for entry in entries:
            if _entry_path(item, entry, settings, dest) is None:
                name = _first(entry)
                lines.append(f"      {shown(file_path(item, name, settings, dest))}   from {repo_url}/resolve/main/{name}")
    lines.append(f"Then check with: {COMMAND} --list" + (f" --dest {base}" if dest is not None else ""))
    return lines


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Fetch the official GPT-SoVITS pretrained files from Hugging Face, or list what is present.",
        epilog="items: " + ", ".join(i.key for i in ITEMS) + ", all. Without items: --list.",
    )
    parser.add_argument("items", nargs="*", help="items to fetch (bert hubert sv g2pw v1 v2 v2Pro v2ProPlus v3 v4 all)")
    parser.add_argument("--list", action="store_true", help="show every item with present/missing, size and use")
    parser.add_argument("--version", action="append", default=[], metavar="V",
                        help="fetch everything version V needs (v1, v2, v2Pro, v2ProPlus, v3, v4); may be repeated")
    parser.add_argument("--dest", metavar="DIR", help="pretrained folder to use instead of the settings' one")
    parser.add_argument("--endpoint", metavar="URL", help="Hugging Face mirror (sets HF_ENDPOINT)")
    parser.add_argument("--inference-only", action="store_true",
                        help="skip the discriminators (s2D*), which only finetuning needs")
    parser.add_argument("--asr", action="append", default=[], metavar="SIZE",
                        help="fetch a faster-whisper model into WHISPER_DIR/SIZE (tiny, base, small, medium, "
                             "large-v3, large-v3-turbo, *.en ...); may be repeated")
    parser.add_argument("--separator", action="append", default=[], metavar="MODEL",
                        help="fetch a vocal separation model into PRETRAINED_DIR/uvr (bs-roformer, mel-roformer, "
                             "hp2, hp5, deecho-dereverb, or a model file name audio-separator lists)")
    return parser


def _resolve_items(names: Sequence[str], versions: Sequence[str], parser: argparse.ArgumentParser) -> list[Item]:
    keys: list[str] = []
    for name in names:
        if name.lower() == "all":
            keys.extend(i.key for i in ITEMS)
            continue
        try:
            keys.append(_canonical_key(name))
        except KeyError:
            parser.error(f"unknown item {name!r} (choose from {', '.join(i.key for i in ITEMS)}, all)")
    for version in versions:
        try:
            v = _canonical_key(version)
        except KeyError:
            v = ""
        if v not in VERSION_NEEDS:
            parser.error(f"unknown version {version!r} (choose from {', '.join(VERSIONS)})")
        keys.extend(VERSION_NEEDS[v])
    seen: dict[str, None] = {}
    for k in keys:
        seen.setdefault(k, None)
    return [ITEMS_BY_KEY[k] for k in seen]


def main(argv: Sequence[str] | None = None, settings: Any = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.endpoint is not None:
        if not args.endpoint.startswith(("http://", "https://")):
            parser.error(f"--endpoint must be an http(s) URL, not {args.endpoint!r}")
        args.endpoint = args.endpoint.rstrip("/")
        os.environ["HF_ENDPOINT"] = args.endpoint
    endpoint = args.endpoint or _endpoint()
    if settings is None:
        settings = _load_settings()
    dest = args.dest

    if args.list or (not args.items and not args.version and not args.asr and not args.separator):
        print_list(settings, dest, out)
        return 0
    extra_failed = 0
    if args.asr or args.separator:
        extra_failed = fetch_extra(args.asr, args.separator, settings, dest, endpoint, out, err)
        if not args.items and not args.version:
            return extra_failed

    items = _resolve_items(args.items, args.version, parser)
    training = not args.inference_only
    failed: list[tuple[Item, FetchError]] = []
    network_down: FetchError | None = None
    base = _base_dir(settings, dest)
    print(f"Pretrained folder: {base}", file=out)
    try:
        for item in items:
            st = item_status(item, settings, dest)
            if not st.missing and (not training or not st.optional_missing):
                print(f"  {item.key}: already present ({_human(st.size)})", file=out)
                continue
            if network_down is not None:
                failed.append((item, network_down))
                continue
            print(f"  {item.key}: fetching {item.label} from {item.repo_id} ...", file=out, flush=True)
            try:
                done = fetch_item(item, settings, dest, args.endpoint, training_files=training)
            except FetchError as exc:
                failed.append((item, exc))
                print(f"  {item.key}: FAILED: {exc}", file=out, flush=True)
                if exc.network:
                    network_down = exc
                continue
            print(f"  {item.key}: done ({_human(done.size)})", file=out, flush=True)
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to resume: partial downloads are kept.", file=err)
        return 130

    if not failed:
        print("All requested items are present.", file=out)
        return extra_failed
    print(f"\nCould not fetch {len(failed)} item(s): " + ", ".join(f"{i.label} ({i.key})" for i, _ in failed), file=err)
    reasons: dict[str, list[str]] = {}
    for item, exc in failed:
        reasons.setdefault(str(exc), []).append(item.key)
    for reason, keys in reasons.items():
        print(f"Reason ({', '.join(keys)}): {reason}", file=err)
    for line in _manual_instructions(failed, settings, dest, endpoint, training):
        print(line, file=err)
    return 1


if __name__ == "__main__":
    sys.exit(main())
