"""One finetuning experiment from a ``.list``/CSV to exported checkpoints: the stages in order, their settings
saved in ``experiment.json`` (so a later command, the tab or a restart continues with the same choices), and each
stage's outcome recorded there.

Stages: ``data`` (read, clean, split) → ``features`` (upstream's four preparation steps) → ``s2`` (SoVITS: full
finetuning for v1/v2/v2Pro/v2ProPlus, LoRA adapters on the CFM for v3/v4, as upstream's webui) → ``s1`` (GPT, optionally
with upstream's DPO loss). Every stage resumes on its own: the data stage reuses its per-clip analysis, the feature stage
skips finished items, the trainers continue from ``state_latest.pt``. Checkpoint selection (the eval loop) is not
a gsv_core stage because it needs the ASR and metrics of ``eval``; the CLI and the tab call it afterwards."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from gsv_core.errors import GSVError
from gsv_core.versions import finetune_versions, is_cfm, is_pro
from .common import CancelFn, ProgressFn
from gsv_core.fileio import write_json_atomic

from .layout import ExperimentLayout, check_experiment_name

STAGES = ("data", "features", "s2", "s1")
VERSIONS = finetune_versions()  # the one version table
#: the share of the one-click progress bar each stage takes
_WEIGHTS = {"data": 0.1, "features": 0.2, "s2": 0.4, "s1": 0.3}


class FinetuneError(GSVError):
    """A finetuning experiment that cannot run as configured."""


@dataclass
class Cancelled:
    """The result of a stage stopped by the user (what it finished is kept)."""
    stage: str
    cancelled: bool = True

    def summary(self) -> str:
        return f"{self.stage} cancelled; run it again to continue"


@dataclass
class FinetuneConfig:
    """Everything one experiment needs. Empty model paths mean "the pretrained files of ``version`` where the
    settings point" (what ``python -m gsv_core.download <version>`` fetches)."""
    name: str
    version: str = "v2Pro"
    source: str = ""  # the .list or CSV
    audio_dir: str = ""  # optional: look audio up here by base name (upstream's "audio folder")
    default_lang: str = "zh"
    device: str = "auto"
    precision: str = "auto"
    pretrained_s1: str = ""
    pretrained_s2g: str = ""
    pretrained_s2d: str = ""
    bert_dir: str = ""
    hubert_dir: str = ""
    sv_path: str = ""
    asr_check: str = ""  # faster-whisper folder for the data stage's transcript check (asr_mismatch); "" = off
    cleaning: dict = field(default_factory=dict)  # CleaningConfig fields to override
    split: dict = field(default_factory=dict)  # SplitConfig fields to override
    features: dict = field(default_factory=dict)  # e.g. batch_size
    #: S2TrainConfig fields to override (batch_size, epochs, ...); v3/v4: LoRATrainConfig fields (lora_rank, ...)
    s2: dict = field(default_factory=dict)
    s1: dict = field(default_factory=dict)  # S1TrainConfig fields to override (batch_size, epochs, lora, dpo, ...)

    def validate(self) -> "FinetuneConfig":
        self.name = check_experiment_name(self.name)
        if self.version not in VERSIONS:
            raise FinetuneError(f"version {self.version!r} cannot be finetuned here; choose one of {', '.join(VERSIONS)}")
        for key in ("cleaning", "split", "features", "s2", "s1"):
            if not isinstance(getattr(self, key), dict):
                raise FinetuneError(f"{key} must be a mapping of option names to values")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FinetuneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FinetuneError(f"unknown experiment setting(s): {', '.join(unknown)}")
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}).validate()


def _dataclass_kwargs(cls, values: Mapping[str, Any], what: str) -> dict:
    """``values`` checked against the dataclass's fields; JSON lists become tuples where the field is a tuple."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise FinetuneError(f"unknown {what} option(s): {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
    out = {}
    for k, v in values.items():
        if isinstance(v, list) and "tuple" in str(fields[k].type):
            v = tuple(v)
        out[k] = v
    return out


def _same_file(a: str, b: str) -> bool:
    """Whether two dataset paths name the same dataset (same file, or byte-identical copies: an upload kept in the
    experiment folder is a copy of the file the user picked)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.resolve() == pb.resolve():
            return True
        if pa.is_file() and pb.is_file():
            return pa.stat().st_size == pb.stat().st_size and pa.read_bytes() == pb.read_bytes()
    except OSError:
        pass
    return False


def describe(stage: str, result: Any) -> str:
    """One line about a stage's result for the CLI and the job log."""
    if getattr(result, "cancelled", False):
        return f"{stage}: cancelled (run it again to continue)"
    if stage == "data" and hasattr(result, "counts"):
        c, sec = result.counts, getattr(result, "seconds", {})
        return (f"data: {c.get('kept', 0)} of {c.get('rows', 0)} clips kept ({sec.get('kept', 0) / 60:.1f} min), "
                f"{c.get('dropped', 0)} dropped, {c.get('invalid', 0)} invalid rows; split train {c.get('train', 0)}"
                f" / val {c.get('val', 0)} / test {c.get('test', 0)}; reference pool {c.get('refpool', 0)}")
    if stage == "features" and hasattr(result, "usable"):
        return f"features: {len(result.usable)} items ready, {len(result.failed)} failed"
    exports = getattr(result, "exports", None)
    if exports is not None:
        names = ", ".join(Path(str(p)).name for p in exports) or "none yet"
        return f"{stage}: exported {names}"
    return f"{stage}: done"


class Experiment:
    """An experiment folder plus its saved configuration and stage records."""

    def __init__(self, settings: Any, config: FinetuneConfig):
        self.settings = settings
        self.config = config.validate()
        self.layout = ExperimentLayout.under(settings.experiments_dir, config.name)
        self._check_against_saved()

    def _check_against_saved(self) -> None:
        """Refuse settings that would silently repurpose an existing experiment: its features and training
        states belong to the version and dataset they were made from (a form left on its defaults after a restart
        must not rewrite them)."""
        saved = self._record().get("config")
        if not saved:
            return
        stages = self.stage_records()
        trained = any(p.is_file() for p in (self.layout.s2_dir / "state_latest.pt", self.layout.s1_dir / "state_latest.pt"))
        featured = bool(stages.get("features")) or trained or (self.layout.name2semantic.is_file())
        name = self.config.name
        old_version, new_version = saved.get("version"), self.config.version
        if old_version and new_version != old_version and featured:
            raise FinetuneError(
                f"experiment {name!r} was prepared for {old_version}: its features and training state belong to that "
                f"version. Choose {old_version} (press 'Load saved settings'), or use a new experiment name for "
                f"{new_version}.")
        old_source, new_source = saved.get("source") or "", self.config.source or ""
        if old_source and new_source and not _same_file(old_source, new_source) and featured:
            raise FinetuneError(
                f"experiment {name!r} was made from {Path(old_source).name}; its features and training state come "
                f"from that dataset. Keep it (press 'Load saved settings'), or use a new experiment name for "
                f"{Path(new_source).name}.")

    # -- persistence ---------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Any, name: str) -> "Experiment":
        layout = ExperimentLayout.under(settings.experiments_dir, name)
        if not layout.experiment_json.is_file():
            raise FinetuneError(f"no experiment named {name!r} in {settings.experiments_dir} (create it with "
                                "`python -m gsv_core.finetune data --name NAME --list FILE`)")
        import json

        try:
            data = json.loads(layout.experiment_json.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise FinetuneError(f"{layout.experiment_json} is not valid JSON ({exc}); fix or delete it") from exc
        return cls(settings, FinetuneConfig.from_dict(data.get("config", {})))

    @classmethod
    def list_names(cls, settings: Any) -> list[str]:
        root = Path(settings.experiments_dir)
        if not root.is_dir():
            return []
        return sorted(p.parent.name for p in root.glob("*/experiment.json"))

    def _record(self) -> dict:
        import json

        if self.layout.experiment_json.is_file():
            try:
                return json.loads(self.layout.experiment_json.read_text(encoding="utf-8"))
            except ValueError:
                pass
        return {}

    def save(self, **stage_records: Any) -> None:
        import os

        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the first process writes
            return
        rec = self._record()
        rec["config"] = self.config.to_dict()
        stages = rec.setdefault("stages", {})
        stages.update(stage_records)
        write_json_atomic(self.layout.experiment_json, rec)

    def stage_records(self) -> dict:
        return self._record().get("stages", {})

    # -- model files -----------------------------------------------------------------------------------------------
    def pretrained(self) -> dict[str, Optional[Path]]:
        """The pretrained s1 / s2G / s2D / BERT / HuBERT / SV paths this experiment uses."""
        from gsv_core.download import ITEMS_BY_KEY, file_path

        c, s = self.config, self.settings
        item = ITEMS_BY_KEY[c.version]
        s2d_default = file_path(item, item.optional[0], s) if item.optional else None
        return dict(
            s1=Path(c.pretrained_s1) if c.pretrained_s1 else file_path(item, item.files[0], s),
            s2g=Path(c.pretrained_s2g) if c.pretrained_s2g else file_path(item, item.files[1], s),
            s2d=Path(c.pretrained_s2d) if c.pretrained_s2d else s2d_default,
            bert=Path(c.bert_dir) if c.bert_dir else Path(s.bert_dir),
            hubert=Path(c.hubert_dir) if c.hubert_dir else Path(s.hubert_dir),
            sv=Path(c.sv_path) if c.sv_path else Path(s.sv_path),
        )

    def _require(self, path: Optional[Path], what: str, key: str) -> Path:
        if path is None or not Path(path).exists():
            raise FinetuneError(f"{what} not found at {path}: run `python -m gsv_core.download {key}` or give its "
                                "path in the experiment settings")
        return Path(path)

    @property
    def sovits_export_dir(self) -> Path:
        """The first SoVITS weight folder; v3/v4 LoRA exports go to the version's folder (SoVITS_weights_v3 /
        _v4) when it is configured, as upstream's webui keeps them, so the A/B baseline is that version's base."""
        if is_cfm(self.config.version):
            from gsv_core.weights import version_weight_dir

            return version_weight_dir(self.settings, "SoVITS", self.config.version)
        return Path(self.settings.sovits_weight_dirs[0])

    @property
    def gpt_export_dir(self) -> Path:
        if is_cfm(self.config.version):
            from gsv_core.weights import version_weight_dir

            return version_weight_dir(self.settings, "GPT", self.config.version)
        return Path(self.settings.gpt_weight_dirs[0])

    def exports(self) -> dict[str, list[str]]:
        """Exported checkpoints of this experiment, oldest epoch first."""
        import re

        def epoch(p: Path) -> int:
            m = re.search(r"[-_]e(\d+)", p.name)
            return int(m.group(1)) if m else -1

        name = self.config.name
        s2 = [p for p in self.sovits_export_dir.glob(f"{name}_e*.pth")] if self.sovits_export_dir.is_dir() else []
        s1 = [p for p in self.gpt_export_dir.glob(f"{name}-e*.ckpt")] if self.gpt_export_dir.is_dir() else []
        return dict(sovits=[str(p) for p in sorted(s2, key=epoch)], gpt=[str(p) for p in sorted(s1, key=epoch)])

    # -- stages ------------------------------------------------------------------------------------------------------
    def run_data(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None, transcribe=None,
                 audio_allowed=None):
        from .data import CleaningConfig, DataCancelled, SplitConfig, prepare_dataset

        c = self.config
        if c.asr_check and transcribe is None:
            raise FinetuneError("the transcript check needs an ASR transcriber: run the data stage from the CLI or "
                                "the Finetune tab, or clear asr_check")
        if not c.source:
            raise FinetuneError("no dataset given: choose a GPT-SoVITS .list or a CSV with audio paths and text")
        cleaning = CleaningConfig(**_dataclass_kwargs(CleaningConfig, c.cleaning, "cleaning"))
        split = SplitConfig(**_dataclass_kwargs(SplitConfig, c.split, "split"))
        validate = getattr(cleaning, "validate", None)
        if callable(validate):
            validate()
        self.save()
        t0 = time.time()
        try:
            result = prepare_dataset(c.source, self.layout, audio_dir=c.audio_dir or None,
                                     default_lang=c.default_lang, cleaning=cleaning, split=split,
                                     transcribe=transcribe, progress=progress, cancel=cancel,
                                     audio_allowed=audio_allowed)
        except DataCancelled:
            return Cancelled("data")
        self.save(data=dict(done=True, seconds=round(time.time() - t0, 1), finished=time.time(),
                            counts=result.counts))
        return result

    def run_features(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None):
        from .features import extract_features

        c, p = self.config, self.pretrained()
        if not self.layout.split_list("train").is_file():
            raise FinetuneError("the data stage has not run: prepare the data first (it writes train.list)")
        sv = self._require(p["sv"], "speaker model (ERes2NetV2)", "sv") if is_pro(c.version) else None
        self.save()
        t0 = time.time()
        from gsv_core.text import configure

        configure(self.settings)  # G2PW and the language detector where the settings point
        result = extract_features(
            self.layout, version=c.version, bert_dir=self._require(p["bert"], "BERT folder", "bert"),
            hubert_dir=self._require(p["hubert"], "HuBERT folder", "hubert"),
            pretrained_s2g=self._require(p["s2g"], "pretrained SoVITS", c.version), sv_path=sv,
            device=c.device, precision=c.precision, progress=progress, cancel=cancel,
            **{"use_g2pw": bool(getattr(self.settings, "use_g2pw", True)), **c.features})
        if getattr(result, "cancelled", False):
            return result
        self.save(features=dict(done=True, seconds=round(time.time() - t0, 1), finished=time.time()))
        return result

    def run_s2(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None, log=None):
        if is_cfm(self.config.version):
            return self._run_s2_lora(progress, cancel, log)
        from .s2_train import S2TrainConfig, train_s2

        c, p = self.config, self.pretrained()
        opts = _dataclass_kwargs(S2TrainConfig, c.s2, "SoVITS training")
        if "num_workers" not in opts:  # loader processes help a GPU; on the CPU they only compete for its cores
            from gsv_core.device import resolve_device

            opts["num_workers"] = 2 if resolve_device(c.device).type == "cuda" else 0
        s2d = p["s2d"] if p["s2d"] is not None and Path(p["s2d"]).is_file() else None
        cfg = S2TrainConfig(**{**dict(version=c.version, device=c.device, precision=c.precision,
                                      pretrained_s2g=str(self._require(p["s2g"], "pretrained SoVITS", c.version)),
                                      pretrained_s2d=str(s2d) if s2d else None,
                                      export_dir=str(self.sovits_export_dir), export_name=c.name), **opts})
        self.save()
        result = train_s2(self.layout, cfg, progress=progress, cancel=cancel, log=log)
        if not getattr(result, "cancelled", False):
            self.save(s2=dict(done=True, finished=time.time()))
        return result

    def _run_s2_lora(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None, log=None):
        """v3/v4: LoRA adapters (rank ``s2.lora_rank``, default 32) on the official base model, as upstream's
        s2_train_v3_lora; exports in upstream's LoRA format into the version's SoVITS weight folder."""
        from .s2_lora_train import LoRATrainConfig, train_s2_lora

        c, p = self.config, self.pretrained()
        opts = _dataclass_kwargs(LoRATrainConfig, c.s2, f"SoVITS {c.version} LoRA training")
        for fixed in ("version", "pretrained_s2g"):
            if fixed in opts:
                raise FinetuneError(f"s2.{fixed} is set by the experiment (version, pretrained_s2g), not as an "
                                    "s2 option")
        if "num_workers" not in opts:
            from gsv_core.device import resolve_device

            opts["num_workers"] = 2 if resolve_device(c.device).type == "cuda" else 0
        cfg = LoRATrainConfig(**{**dict(version=c.version, device=c.device, precision=c.precision,
                                        pretrained_s2g=str(self._require(p["s2g"], "pretrained SoVITS", c.version)),
                                        export_dir=str(self.sovits_export_dir), export_name=c.name), **opts})
        self.save()
        result = train_s2_lora(self.layout, cfg, progress=progress, cancel=cancel, log=log)
        if not getattr(result, "cancelled", False):
            self.save(s2=dict(done=True, finished=time.time()))
        return result

    def run_s1(self, progress: ProgressFn | None = None, cancel: CancelFn | None = None, log=None):
        from .s1_train import S1TrainConfig, train_s1

        c, p = self.config, self.pretrained()
        opts = _dataclass_kwargs(S1TrainConfig, c.s1, "GPT training")
        cfg = S1TrainConfig(**{**dict(device=c.device, precision=c.precision,
                                      pretrained_s1=str(self._require(p["s1"], "pretrained GPT", c.version)),
                                      export_dir=str(self.gpt_export_dir), export_name=c.name), **opts})
        self.save()
        result = train_s1(self.layout, cfg, progress=progress, cancel=cancel, log=log)
        if not getattr(result, "cancelled", False):
            self.save(s1=dict(done=True, finished=time.time()))
        return result

    def run(self, stages=STAGES, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
            transcribe=None, log=None, audio_allowed=None) -> dict[str, Any]:
        """Run ``stages`` in order (the one-click path). Returns each stage's result; stops at a cancel."""
        stages = [s for s in STAGES if s in set(stages)]
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise FinetuneError(f"unknown stage(s) {', '.join(sorted(unknown))}; use {', '.join(STAGES)}")
        total = sum(_WEIGHTS[s] for s in stages) or 1.0
        done = 0.0
        results: dict[str, Any] = {}
        for stage in stages:
            base, share = done / total, _WEIGHTS[stage] / total

            def sub(frac: float, msg: str, _b=base, _s=share, _st=stage) -> None:
                if progress is not None:
                    progress(_b + _s * max(0.0, min(1.0, frac)), f"[{_st}] {msg}")

            if stage == "data":
                results[stage] = self.run_data(sub, cancel, transcribe=transcribe, audio_allowed=audio_allowed)
            elif stage == "features":
                results[stage] = self.run_features(sub, cancel)
            elif stage == "s2":
                results[stage] = self.run_s2(sub, cancel, log=log)
            else:
                results[stage] = self.run_s1(sub, cancel, log=log)
            if getattr(results[stage], "cancelled", False) or (cancel is not None and cancel()):
                results["cancelled"] = stage
                break
            done += _WEIGHTS[stage]
        return results
