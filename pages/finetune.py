"""The Finetune tab: layout and wiring only. Stages are gsv_core/finetune (pipeline.Experiment), run in the
background by gsv_core/finetune/jobs.FinetuneJobs (so training outlives the browser tab); checkpoint selection is
eval/selection.py. The page follows a running job with gr.Progress and can re-attach to it after a reload."""
from __future__ import annotations

import csv
import html
import json
import time
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from gsv_core import languages, paths
from gsv_core.versions import finetune_versions, is_cfm

from .cleaning_rules import REPORT_COLUMNS, with_meaning
from .common import on_page_load, user_errors
from .i18n import T, say
from .manage import build_finetune_manage

#: from the one version and language tables
VERSIONS = list(finetune_versions())
LANGS = [(T(f"{lang.name_en} · {code}", f"{lang.name_zh} · {code}"), code)
         for code, lang in languages.LANGUAGES.items() if code in languages.IMPLEMENTED]
RULE_COLUMNS = REPORT_COLUMNS
SELECTION_COLUMNS = ["rank", "best", "system", "cer", "similarity", "rank_cer", "rank_similarity", "gpt", "sovits"]

HELP = """
**One click** runs every stage: *data* (read the `.list` `path|speaker|lang|text` or a CSV with audio and text
columns; clean with a report: too short/long, clipping, silence, long leading/trailing silence, energy/F0 outliers,
low SNR, implausible speaking rate, empty text; clean clips of 3–5 s (the range can start at 2 s; the engine and
RefAudio take references of 3–10 s) also go to the reference pool, which the button under the report imports into a
RefAudio role; a seeded train/val/test split) → *features* (phones + BERT, HuBERT + 32 kHz audio, speaker vectors for
v2Pro/v2ProPlus, semantic tokens; cached) → *SoVITS* (v3/v4: LoRA adapters on the official base model, rank 16–128,
2 epochs by default, exported as upstream's LoRA files into `SoVITS_weights_v3`/`_v4`; they need the base model and
vocoder at synthesis) and *GPT* training, optionally with upstream's DPO loss (checkpoints exported every N epochs in the
official formats into the weight folders, so they appear in the TTS tab at once) → *selection*: every saved epoch
synthesises the held-out test sentences, is transcribed and scored, and the pairs are ranked by CER and speaker
similarity. Every stage resumes: after a cancel, a crash or a restart, press the same button again.
Multi-GPU: `torchrun --nproc_per_node N -m gsv_core.finetune train-s2 --name NAME` (see the README).
"""
HELP_ZH = """
**一键训练**依次运行所有阶段：*数据*（读取 `.list`（`路径|说话人|语言|文本`）或含音频列和文本列的 CSV；清洗并生成报告：
过短/过长、削波、静音、开头/结尾静音过长、音量/音高离群、信噪比低、语速不合理、文本为空；3–5 秒的干净片段（下限可低至
2 秒；推理引擎和参考音频库接受 3–10 秒的参考）同时进入参考池，报告下方的按钮可把它导入参考音频库的角色；按随机种子划分
训练/验证/测试集）→ *特征*（音素 + BERT、HuBERT + 32 kHz 音频、v2Pro/v2ProPlus 的说话人向量、语义 token；有缓存）→
*SoVITS*（v3/v4：在官方底模上训练 LoRA 适配器，秩 16–128，默认 2 轮，按原版 LoRA 格式导出到
`SoVITS_weights_v3`/`_v4`；合成时需要底模和声码器）与 *GPT* 训练，可选用原版的 DPO 损失（每 N 轮按官方格式导出
检查点到权重文件夹，TTS 页立即可用）→ *模型选择*：每个保存的轮次合成留出的测试句，再转写并打分，按 CER 和说话人
相似度给 GPT/SoVITS 组合排名。每个阶段都可续跑：取消、崩溃或重启后，再按同一个按钮即可。
多卡：`torchrun --nproc_per_node N -m gsv_core.finetune train-s2 --name NAME`（见 README）。
"""


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, bool):
        return say("★ best", "★ 最佳") if v else ""
    return "" if v is None else v


def _num(v: Any, what: tuple[str, str], kind=float, low: Optional[float] = None) -> Any:
    """``v`` as a number (None when empty); ``what`` names the field in English and Chinese for the error."""
    from gsv_core.finetune.pipeline import FinetuneError

    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    field = say(*what)
    try:
        out = kind(v)
    except (TypeError, ValueError):
        raise FinetuneError(say("{field} must be a number, not {v!r}", "{field} 必须是数值，而不是 {v!r}",
                                field=field, v=v)) from None
    if low is not None and out < low:
        raise FinetuneError(say("{field} must be at least {low}, not {out}", "{field} 至少为 {low}，而不是 {out}",
                                field=field, low=low, out=out))
    return out


def loss_figure(layout) -> Any:
    """Loss curves of both trainers (matplotlib figure), or None before any training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    for title, path in (("SoVITS (s2)", s2_loss_path(layout)), ("GPT (s1)", layout.s1_dir / "losses.csv")):
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            curves.append((title, rows))
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 3.2), squeeze=False)
    for ax, (title, rows) in zip(axes[0], curves):
        steps = [float(r["step"]) for r in rows]

        def series(col):
            out = []
            for r in rows:
                try:
                    out.append(float(r[col]))
                except (KeyError, TypeError, ValueError):
                    out.append(float("nan"))
            return out

        style = dict(linewidth=1, marker="o" if len(steps) < 30 else None, markersize=3)  # a few steps stay visible
        if "loss_per_token" in rows[0]:  # GPT: the per-token cross-entropy (the summed loss scales with the batch)
            ax.plot(steps, series("loss_per_token"), label="loss per token", **style)
            if "acc" in rows[0]:
                twin = ax.twinx()
                twin.plot(steps, series("acc"), label="top-3 acc", color="tab:green", **style)
                twin.set_ylabel("acc")
                twin.legend(fontsize=7, loc="upper right")
            ax.legend(fontsize=7, loc="upper left")
        else:  # SoVITS: every term on a log scale (mel x45 dominates the linear view)
            cols = [c for c in rows[0] if c not in ("step", "epoch", "lr", "elapsed_s") and not c.startswith("grad")]
            for col in cols[:7]:
                ax.plot(steps, series(col), label=col, **style)
            ax.set_yscale("log")
            ax.legend(fontsize=7, ncol=2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def s2_loss_path(layout) -> Path:
    """The SoVITS loss log: s2/losses.csv, or a v3/v4 LoRA run's s2/lora_<version>_r<rank>/losses.csv (the newest)."""
    paths = [layout.s2_dir / "losses.csv", *sorted(layout.s2_dir.glob("lora_*/losses.csv"))]
    present = [p for p in paths if p.is_file()]
    return max(present, key=lambda p: p.stat().st_mtime_ns) if present else paths[0]


def rules_table(layout) -> list[list[Any]]:
    """Kept / split / reference-pool totals, then clips and seconds failed per rule, from the cleaning report; the
    last cell says what the row means in the request's language (the rule id stays in the first)."""
    if not layout.cleaning_report_json.is_file():
        return []
    data = json.loads(layout.cleaning_report_json.read_text(encoding="utf-8"))
    counts, seconds = data.get("counts", {}), data.get("seconds", {})
    rows = [[f"= {k}", counts.get(k), _fmt(seconds.get(k)), ""]
            for k in ("kept", "dropped", "train", "val", "test", "refpool") if k in counts]
    for rule, r in (data.get("rules") or {}).items():
        rows.append([rule, r.get("failed"), _fmt(r.get("failed_seconds")), r.get("only_reason")])
    return with_meaning(rows)


def build_finetune_tab(settings: Any, services: Any) -> dict[str, Any]:
    from gsv_core.finetune.jobs import FinetuneJobs
    from gsv_core.finetune.layout import ExperimentLayout
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig, FinetuneError

    jobs = getattr(services, "finetune_jobs", None)
    if jobs is None:
        jobs = FinetuneJobs(settings)
        services.finetune_jobs = jobs
    c: dict[str, Any] = {}

    def experiments() -> list[str]:
        return Experiment.list_names(settings)

    with gr.Accordion(T("Help: stages, resume, multi-GPU", "帮助：阶段、续跑、多卡"), open=False):
        gr.Markdown(T(HELP, HELP_ZH))
    with gr.Row(equal_height=True):
        names = experiments()
        c["name"] = gr.Dropdown(names, value=names[0] if names else None, allow_custom_value=True, scale=2,
                                label=T("Experiment name (new or existing)", "实验名（新建或已有）"), elem_id="ft-name")
        c["version"] = gr.Radio(VERSIONS, value="v2Pro", label=T("Version", "版本"), scale=2, elem_id="ft-version")
        c["load"] = gr.Button(T("Load saved settings", "载入已保存的设置"), size="sm", scale=1, elem_id="ft-load")
    with gr.Row():
        c["list_file"] = gr.File(label=T(".list / CSV dataset", ".list / CSV 数据集"),
                                 file_types=[".list", ".csv", ".txt"], type="filepath", height=130,
                                 elem_id="ft-list-file")
        with gr.Column():
            c["list_path"] = gr.Textbox(label=T("…or a .list / CSV path on this machine",
                                                "……或本机上的 .list / CSV 路径"), elem_id="ft-list-path")
            c["audio_dir"] = gr.Textbox(label=T("audio folder (optional: look files up by name)",
                                                "音频文件夹（可选：按文件名查找音频）"), elem_id="ft-audio-dir")
            c["lang"] = gr.Dropdown(LANGS, value="zh", label=T("language of CSV rows without one",
                                                               "CSV 中未注明语言的行所用的语言"))
    with gr.Accordion(T("Cleaning and split", "清洗与划分"), open=False):
        with gr.Row():
            c["min_s"] = gr.Number(value=1.2, minimum=0.1, label=T("drop shorter than (s)", "剔除短于（秒）"),
                                   elem_id="ft-min-s")
            c["max_s"] = gr.Number(value=15.0, minimum=1.0, label=T("drop longer than (s)", "剔除长于（秒）"),
                                   elem_id="ft-max-s")
            c["min_snr"] = gr.Number(value=12.0, label=T("drop SNR below (dB)", "剔除信噪比低于（dB）"))
            c["ref_min"] = gr.Number(value=3.0, minimum=2.0, label=T("reference pool from (s, ≥ 2)", "参考池下限（秒，≥ 2）"))
            c["ref_max"] = gr.Number(value=5.0, minimum=1.0, label=T("reference pool to (s)", "参考池上限（秒）"))
        with gr.Row():
            c["asr_check"] = gr.Checkbox(value=False, label=T("check transcripts with ASR (the ASR model below; drops "
                                                              "clips whose transcript disagrees: CER > 0.3)",
                                                              "用 ASR 检查标注（使用下方的 ASR 模型；剔除识别结果与"
                                                              "标注不符的片段：CER > 0.3）"), elem_id="ft-asr-check")
            c["val_frac"] = gr.Number(value=0.05, minimum=0.0, maximum=0.5, label=T("validation share", "验证集比例"))
            c["test_frac"] = gr.Number(value=0.05, minimum=0.0, maximum=0.5,
                                       label=T("test share (selection)", "测试集比例（用于模型选择）"))
            c["split_seed"] = gr.Number(value=1234, precision=0, label=T("split seed", "划分随机种子"))
    with gr.Accordion(T("Pretrained models (empty = the version's files in the pretrained folder)",
                        "预训练模型（留空 = 使用预训练模型文件夹中该版本的文件）"), open=False):
        with gr.Row():
            c["pre_s1"] = gr.Textbox(label=T("GPT s1 .ckpt", "GPT s1 模型 .ckpt"))
            c["pre_s2g"] = gr.Textbox(label=T("SoVITS s2G .pth", "SoVITS s2G 模型 .pth"))
            c["pre_s2d"] = gr.Textbox(label=T("SoVITS s2D .pth (discriminator)", "SoVITS s2D .pth（判别器）"))
        with gr.Row():
            c["bert_dir"] = gr.Textbox(label=T("BERT folder", "BERT 文件夹"))
            c["hubert_dir"] = gr.Textbox(label=T("HuBERT folder", "HuBERT 文件夹"))
            c["sv_path"] = gr.Textbox(label=T("speaker model (v2Pro/v2ProPlus)", "说话人模型（v2Pro/v2ProPlus）"))
    from gsv_core.finetune.common import suggested_batch_size

    default_bs = suggested_batch_size(settings.device)
    with gr.Row():
        with gr.Column():
            gr.Markdown(T("**SoVITS (s2)**", "**SoVITS（s2）**"))
            with gr.Row():
                c["s2_bs"] = gr.Number(value=default_bs, precision=0, minimum=1, label=T("batch size", "批大小"),
                                       elem_id="ft-s2-bs")
                c["s2_epochs"] = gr.Number(value=8, precision=0, minimum=1, maximum=100, label=T("epochs", "轮数"),
                                           elem_id="ft-s2-epochs")
                c["s2_save"] = gr.Number(value=4, precision=0, minimum=1,
                                         label=T("export every N epochs", "每 N 轮导出一次"), elem_id="ft-s2-save")
                c["s2_text_lr"] = gr.Slider(0.2, 0.6, value=0.4, step=0.05,
                                            label=T("text-module lr weight", "文本模块学习率权重"))
                c["s2_lora_rank"] = gr.Dropdown([16, 32, 64, 128], value=32, label=T("LoRA rank (v3/v4)",
                                                                                     "LoRA 秩（v3/v4）"),
                                                visible=False, elem_id="ft-s2-lora-rank")
        with gr.Column():
            gr.Markdown(T("**GPT (s1)**", "**GPT（s1）**"))
            with gr.Row():
                c["s1_bs"] = gr.Number(value=default_bs, precision=0, minimum=1, label=T("batch size", "批大小"),
                                       elem_id="ft-s1-bs")
                c["s1_epochs"] = gr.Number(value=15, precision=0, minimum=1, maximum=100, label=T("epochs", "轮数"),
                                           elem_id="ft-s1-epochs")
                c["s1_save"] = gr.Number(value=5, precision=0, minimum=1,
                                         label=T("export every N epochs", "每 N 轮导出一次"), elem_id="ft-s1-save")
                c["lora"] = gr.Checkbox(value=False, label=T("LoRA (adapters only, merged on export)",
                                                             "LoRA（只训练适配器，导出时合并）"),
                                        elem_id="ft-lora")
                c["lora_rank"] = gr.Dropdown([8, 16, 32, 64, 128], value=32, label=T("LoRA rank", "LoRA 秩"))
                c["dpo"] = gr.Checkbox(value=False, label=T("DPO (upstream's if_dpo: also learn against repeated/"
                                                            "skipped spans; halves the batch)",
                                                            "DPO（原版的 if_dpo：额外学习避免重复/漏读片段；"
                                                            "批大小减半）"), elem_id="ft-dpo")
    with gr.Row():
        c["device"] = gr.Dropdown([(T("auto", "自动"), "auto"), ("cpu", "cpu"), ("cuda", "cuda")], value="auto",
                                  label=T("device", "设备"))
        c["precision"] = gr.Dropdown([(T("auto", "自动"), "auto"), ("fp32", "fp32"), ("fp16", "fp16"),
                                      ("bf16", "bf16")], value="auto",
                                     label=T("precision (auto: fp16 on CUDA, fp32 on CPU)",
                                             "精度（自动：CUDA 上 fp16，CPU 上 fp32）"))
        c["asr_model"] = gr.Dropdown(_asr_models(settings), value=(_asr_models(settings) or [None])[0],
                                     allow_custom_value=True,
                                     label=T("ASR model for selection (faster-whisper)",
                                             "模型选择所用的 ASR 模型（faster-whisper）"),
                                     elem_id="ft-asr-model")
        c["select_max"] = gr.Number(value=50, precision=0, minimum=1,
                                    label=T("held-out sentences used", "使用的留出句数"))
    with gr.Row():
        c["one_click"] = gr.Button(T("One click (all stages + selection)", "一键训练（所有阶段 + 模型选择）"),
                                   variant="primary", elem_id="ft-one-click")
        c["cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", elem_id="ft-cancel")
        c["refresh"] = gr.Button(T("Refresh", "刷新"), elem_id="ft-refresh")
    with gr.Row():
        c["b_data"] = gr.Button(T("1 Prepare data", "1 准备数据"), size="sm", elem_id="ft-data")
        c["b_features"] = gr.Button(T("2 Features", "2 提取特征"), size="sm", elem_id="ft-features")
        c["b_s2"] = gr.Button(T("3 Train SoVITS", "3 训练 SoVITS"), size="sm", elem_id="ft-s2")
        c["b_s1"] = gr.Button(T("4 Train GPT", "4 训练 GPT"), size="sm", elem_id="ft-s1")
        c["b_select"] = gr.Button(T("5 Select checkpoints", "5 挑选模型"), size="sm", elem_id="ft-select")
    c["status"] = gr.HTML(_status_html(jobs.status()), elem_id="ft-status")
    # the page follows a running job by polling (also after a reload); unchanged ticks send nothing
    c["timer"] = gr.Timer(2.0)
    c["seen"] = gr.State("")
    with gr.Row():
        c["rules"] = gr.Dataframe(headers=RULE_COLUMNS, interactive=False, label=T("Cleaning report", "清洗报告"),
                                  elem_id="ft-rules", scale=3, max_height=420, wrap=True,
                                  column_widths=["27%", "9%", "13%", "11%", "40%"])
        c["losses"] = gr.Plot(label=T("Loss curves", "损失曲线"), elem_id="ft-losses", scale=3)
    from .refpool import build_refpool_import

    def _pool_of(name):
        layout = _layout_or_none((name or "").strip())
        return layout.split_list("refpool") if layout is not None and layout.split_list("refpool").is_file() else None

    c["pool"] = build_refpool_import(services, _pool_of, [c["name"]], "ft", "finetune_import_pool")
    c["exports"] = gr.Markdown(elem_id="ft-exports")
    c["selection"] = gr.Dataframe(headers=SELECTION_COLUMNS, interactive=False, wrap=True,
                                  label=T("Checkpoint selection (held-out sentences; ★ = best pair)",
                                          "模型选择（留出句；★ = 最佳组合）"),
                                  elem_id="ft-selection")
    c["log"] = gr.Textbox(label=T("log", "日志"), lines=6, max_lines=12, interactive=False, elem_id="ft-log")
    build_finetune_manage(settings, services, c)  # delete an experiment (pages/manage.py)

    form_keys = ("name", "version", "list_file", "list_path", "audio_dir", "lang", "min_s", "max_s", "min_snr",
                 "ref_min", "ref_max", "val_frac", "test_frac", "split_seed", "pre_s1", "pre_s2g", "pre_s2d",
                 "bert_dir", "hubert_dir", "sv_path", "s2_bs", "s2_epochs", "s2_save", "s2_text_lr", "s1_bs",
                 "s1_epochs", "s1_save", "lora", "lora_rank", "device", "precision", "asr_check")
    form = [c[k] for k in form_keys]
    #: inputs added later, after the ASR model and sentence count in the API order (older API callers keep working)
    late_keys = ("s2_lora_rank", "dpo")
    late = [c[k] for k in late_keys]

    def config_from_form(values: dict) -> FinetuneConfig:
        name = (values["name"] or "").strip()
        if not name:
            raise FinetuneError(say("give the experiment a name", "请给实验起个名字"))
        layout = ExperimentLayout.under(settings.experiments_dir, name)
        cfg = Experiment.open(settings, name).config if layout.experiment_json.is_file() else FinetuneConfig(name=name)
        cfg.version = values["version"] or cfg.version
        source = values["list_file"] or (values["list_path"] or "").strip()
        if source:
            src = Path(source).expanduser()
            if values["list_file"]:  # an upload is a temporary file: keep a copy with the experiment, named by
                # its content so a different upload never overwrites the dataset an experiment was made from
                import hashlib

                data = src.read_bytes()
                layout.data_dir.mkdir(parents=True, exist_ok=True)
                kept = layout.data_dir / f"source-{hashlib.sha256(data).hexdigest()[:12]}{src.suffix or '.list'}"
                if not kept.is_file():
                    kept.write_bytes(data)
                src = kept
            else:  # a typed server path: the one path policy
                src = paths.check_readable(settings, src, ".list / CSV file")
            cfg.source = str(src.resolve())
        if not cfg.source:
            raise FinetuneError(say("choose a .list or CSV (upload it or type its path)",
                                    "请选择 .list 或 CSV（上传或填写路径）"))
        cfg.audio_dir = (values["audio_dir"] or "").strip()
        if cfg.audio_dir:
            cfg.audio_dir = str(paths.check_readable(settings, cfg.audio_dir, "audio folder", kind="dir"))
        cfg.default_lang = values["lang"] or "zh"
        cfg.device, cfg.precision = values["device"] or "auto", values["precision"] or "auto"
        for key, field in (("pre_s1", "pretrained_s1"), ("pre_s2g", "pretrained_s2g"), ("pre_s2d", "pretrained_s2d"),
                           ("bert_dir", "bert_dir"), ("hubert_dir", "hubert_dir"), ("sv_path", "sv_path")):
            raw = (values[key] or "").strip()
            if raw:  # model files and folders named in the form: the app's folders only
                raw = str(paths.check_readable(settings, raw, key.replace("_", " "),
                                               kind="dir" if key.endswith("_dir") else "file"))
            setattr(cfg, field, raw)
        cleaning = dict(min_seconds=_num(values["min_s"], ("minimum duration", "最短时长"), float, 0.1),
                        max_seconds=_num(values["max_s"], ("maximum duration", "最长时长"), float, 1.0),
                        min_snr_db=_num(values["min_snr"], ("minimum SNR", "最低信噪比"), float))
        cfg.cleaning.update({k: v for k, v in cleaning.items() if v is not None})
        lo = _num(values["ref_min"], ("reference pool start", "参考池下限"), float, 2.0)
        hi = _num(values["ref_max"], ("reference pool end", "参考池上限"), float, 1.0)
        if lo is not None and hi is not None:
            if hi <= lo:
                raise FinetuneError(say("the reference pool range needs 'from' below 'to'",
                                        "参考池范围的下限必须小于上限"))
            cfg.cleaning["refpool_seconds"] = [lo, hi]
        split = dict(val_fraction=_num(values["val_frac"], ("validation share", "验证集比例"), float, 0.0),
                     test_fraction=_num(values["test_frac"], ("test share", "测试集比例"), float, 0.0),
                     seed=_num(values["split_seed"], ("split seed", "划分随机种子"), int, 0))
        cfg.split.update({k: v for k, v in split.items() if v is not None})
        s2 = dict(batch_size=_num(values["s2_bs"], ("SoVITS batch size", "SoVITS 批大小"), int, 1),
                  epochs=_num(values["s2_epochs"], ("SoVITS epochs", "SoVITS 轮数"), int, 1),
                  save_every_epochs=_num(values["s2_save"], ("SoVITS export frequency", "SoVITS 导出间隔"), int, 1))
        if is_cfm(cfg.version):  # v3/v4: LoRA training, no text-module learning rate
            s2["lora_rank"] = _num(values.get("s2_lora_rank"), ("SoVITS LoRA rank", "SoVITS LoRA 秩"), int, 1)
            cfg.s2.pop("text_low_lr_rate", None)
        else:
            s2["text_low_lr_rate"] = _num(values["s2_text_lr"], ("text lr weight", "文本模块学习率权重"), float, 0.0)
            cfg.s2.pop("lora_rank", None)
        cfg.s2.update({k: v for k, v in s2.items() if v is not None})
        s1 = dict(batch_size=_num(values["s1_bs"], ("GPT batch size", "GPT 批大小"), int, 1),
                  epochs=_num(values["s1_epochs"], ("GPT epochs", "GPT 轮数"), int, 1),
                  save_every_epochs=_num(values["s1_save"], ("GPT export frequency", "GPT 导出间隔"), int, 1),
                  lora=bool(values["lora"]), lora_rank=_num(values["lora_rank"], ("LoRA rank", "LoRA 秩"), int, 1),
                  dpo=bool(values.get("dpo")))
        cfg.s1.update({k: v for k, v in s1.items() if v is not None})
        return cfg.validate()

    def view(name: Optional[str]) -> tuple:
        """(status, rules, losses, exports, selection, log) for the page."""
        st = jobs.status()
        name = (name or st.experiment or "").strip()
        rules, fig, exports, selection = [], None, "", []
        layout = _layout_or_none(name)
        if layout is not None and layout.root.is_dir():
            rules = rules_table(layout)
            fig = loss_figure(layout)
            if layout.experiment_json.is_file():
                exp = Experiment.open(settings, name)
                ex = exp.exports()
                parts = [say("**SoVITS exports:** {files}", "**SoVITS 导出：** {files}",
                             files=", ".join(Path(p).name for p in ex["sovits"]) or "—"),
                         say("**GPT exports:** {files}", "**GPT 导出：** {files}",
                             files=", ".join(Path(p).name for p in ex["gpt"]) or "—")]
                stages = exp.stage_records()
                done = [_stage_name(s) for s in ("data", "features", "s2", "s1") if stages.get(s, {}).get("done")]
                parts.append(say("**stages done:** {done} · folder `{folder}`", "**已完成阶段：** {done} · 文件夹 `{folder}`",
                                 done=say(", ", "、").join(done) or "—", folder=layout.root))
                exports = "  \n".join(parts)
            selection = _selection_rows(layout)
        return (_status_html(st), rules, fig, exports, selection, "\n".join(st.log[-40:]))

    def _layout_or_none(name: str):
        if not name:
            return None
        try:
            return ExperimentLayout.under(settings.experiments_dir, name)
        except Exception:  # noqa: BLE001 - an invalid name typed in the box: nothing to show yet
            return None

    def signature(name: Optional[str]) -> str:
        """What the page shows, in a few stat() calls: a tick re-renders only when this changes."""
        st = jobs.status()
        parts = [st.state, st.experiment, st.stage, f"{st.fraction:.3f}", st.message, str(len(st.log)),
                 str(int(st.elapsed) // 10 if st.state == "running" else 0), (name or "").strip()]
        layout = _layout_or_none((name or st.experiment or "").strip())
        if layout is not None:
            for path in (layout.cleaning_report_json, s2_loss_path(layout), layout.s1_dir / "losses.csv",
                         layout.experiment_json, layout.selection_dir):
                try:
                    parts.append(str(path.stat().st_mtime_ns))
                except OSError:
                    parts.append("-")
        return "|".join(parts)

    outputs = [c[k] for k in ("status", "rules", "losses", "exports", "selection", "log")]

    def follow(name: str) -> Any:
        """Wait for the job (API callers get its final state; the page itself is kept current by the timer)."""
        while jobs.running():
            time.sleep(0.5)
        return view(name)

    def tick(name: str, seen: str):
        sig = signature(name)
        if sig == seen:
            return [gr.skip()] * (len(outputs) + 1)
        return [*view(name), sig]

    c["timer"].tick(tick, [c["name"], c["seen"]], outputs + [c["seen"]], show_progress="hidden",
                    queue=False)

    def selection_follow_up(name: str, asr_model: Optional[str], max_sentences: Any):
        from eval.selection import select_for_experiment

        def run(progress, cancel):
            return select_for_experiment(settings, name, asr_model=asr_model or None,
                                         max_sentences=int(max_sentences or 50), engine=services.engine,
                                         asr=services.asr, progress=progress, cancel=cancel)

        return run

    def starter(stages: tuple, with_selection: bool):
        @user_errors
        def start(*args):
            n = len(form_keys)
            values = dict(zip(form_keys, args[:n]))
            asr_model, select_max = args[n:n + 2]
            if asr_model:  # a name under WHISPER_DIR (the dropdown) or a typed folder: the one path policy
                from gsv_core.asr import resolve_model

                asr_model = str(paths.check_readable(settings, resolve_model(settings.whisper_dir, asr_model),
                                                     "ASR model folder", kind="dir"))
            values.update(zip(late_keys, args[n + 2:]))
            cfg = config_from_form(values)
            transcribe = None
            if values.get("asr_check"):
                from gsv_core.asr import ASRService, transcriber

                if not asr_model:
                    raise FinetuneError(say("the transcript check needs an ASR model: none found under {folder}",
                                            "标注检查需要 ASR 模型：{folder} 下没有找到", folder=settings.whisper_dir))
                cfg.asr_check = str(asr_model)
                transcribe = transcriber(services.asr or ASRService.from_settings(settings), asr_model)
            else:
                cfg.asr_check = ""
            follow_up = selection_follow_up(cfg.name, asr_model, select_max) if with_selection else None
            jobs.start(cfg, stages, follow_up=follow_up, transcribe=transcribe,
                       audio_allowed=lambda p: paths.is_readable(settings, p))
            return follow(cfg.name)

        return start

    extra = [c["asr_model"], c["select_max"]]
    for key, stages, sel, api in (("one_click", ("data", "features", "s2", "s1"), True, "finetune_all"),
                                  ("b_data", ("data",), False, "finetune_data"),
                                  ("b_features", ("features",), False, "finetune_features"),
                                  ("b_s2", ("s2",), False, "finetune_s2"),
                                  ("b_s1", ("s1",), False, "finetune_s1")):
        # no progress overlay (the status panel shows the job); unlimited concurrency so a second click is
        # refused at once by FinetuneJobs instead of queueing a second run behind the first
        c[key].click(starter(stages, sel), form + extra + late, outputs, api_name=api, show_progress="hidden",
                     concurrency_limit=None)

    @user_errors
    def select_only(name, asr_model, select_max):
        name = (name or "").strip()
        exp = Experiment.open(settings, name)
        jobs.start(exp.config, (), follow_up=selection_follow_up(name, asr_model, select_max))
        return follow(name)

    c["b_select"].click(select_only, [c["name"], c["asr_model"], c["select_max"]], outputs,
                        api_name="finetune_select", show_progress="hidden", concurrency_limit=None)

    @user_errors
    def status_now(name):
        return view(name)

    c["refresh"].click(status_now, c["name"], outputs, api_name="finetune_status", show_progress="hidden")

    def cancel():
        if jobs.cancel():
            return say("Cancelling: the current stage stops after its step and saves its state; press the same "
                       "button again to continue.",
                       "正在取消：当前阶段在这一步结束后停止并保存状态；再按同一个按钮即可继续。")
        return say("No job running.", "没有正在运行的任务。")

    c["cancel"].click(cancel, None, c["status"], api_name="finetune_cancel", concurrency_limit=None, queue=False)

    @user_errors
    def load(name):
        cfg = Experiment.open(settings, (name or "").strip()).config
        cl, sp, s2, s1 = cfg.cleaning, cfg.split, cfg.s2, cfg.s1
        upd = dict(version=cfg.version, list_path=cfg.source, audio_dir=cfg.audio_dir, lang=cfg.default_lang,
                   min_s=cl.get("min_seconds"), max_s=cl.get("max_seconds"), min_snr=cl.get("min_snr_db"),
                   ref_min=(cl.get("refpool_seconds") or [None, None])[0],
                   ref_max=(cl.get("refpool_seconds") or [None, None])[1],
                   val_frac=sp.get("val_fraction"), test_frac=sp.get("test_fraction"), split_seed=sp.get("seed"),
                   pre_s1=cfg.pretrained_s1, pre_s2g=cfg.pretrained_s2g, pre_s2d=cfg.pretrained_s2d,
                   bert_dir=cfg.bert_dir, hubert_dir=cfg.hubert_dir, sv_path=cfg.sv_path,
                   s2_bs=s2.get("batch_size"), s2_epochs=s2.get("epochs"), s2_save=s2.get("save_every_epochs"),
                   s2_text_lr=s2.get("text_low_lr_rate"), s1_bs=s1.get("batch_size"), s1_epochs=s1.get("epochs"),
                   s1_save=s1.get("save_every_epochs"), lora=s1.get("lora"), lora_rank=s1.get("lora_rank"),
                   device=cfg.device, precision=cfg.precision, asr_check=bool(cfg.asr_check),
                   s2_lora_rank=s2.get("lora_rank"), dpo=s1.get("dpo"))
        keys = [k for k in form_keys if k not in ("name", "list_file")]
        fill = lambda k: gr.update(value=upd[k]) if upd.get(k) not in (None, "") else gr.update()  # noqa: E731
        return [fill(k) for k in keys] + list(view(cfg.name)) + [fill(k) for k in late_keys]

    form_fields = [c[k] for k in form_keys if k not in ("name", "list_file")]
    form_outputs = form_fields + outputs + late
    c["load"].click(load, c["name"], form_outputs, api_name="finetune_load")

    # v3/v4 train LoRA adapters: their rank instead of the text-module learning rate; a version picked by hand
    # also gets that family's usual epochs (upstream's webui: 2 for v3/v4, 8 otherwise)
    def version_fields(version):
        cfm = is_cfm(version or "")
        return gr.update(visible=cfm), gr.update(visible=not cfm)

    c["version"].change(version_fields, c["version"], [c["s2_lora_rank"], c["s2_text_lr"]], queue=False,
                        show_progress="hidden")

    def version_defaults(version):
        cfm = is_cfm(version or "")
        return gr.update(value=2 if cfm else 8), gr.update(value=1 if cfm else 4)

    c["version"].input(version_defaults, c["version"], [c["s2_epochs"], c["s2_save"]], queue=False,
                       show_progress="hidden")

    def load_if_saved(name):
        layout = _layout_or_none((name or "").strip())
        if layout is None or not layout.experiment_json.is_file():
            return [gr.update() for _ in form_fields] + list(view(name)) + [gr.update() for _ in late]
        try:
            return load(name)
        except gr.Error:
            return [gr.update() for _ in form_fields] + list(view(name)) + [gr.update() for _ in late]
    c["name"].focus(lambda cur: gr.update(choices=experiments(), value=cur), c["name"], c["name"], queue=False)
    # picking an existing experiment shows its saved settings (a form left on defaults must not be run on it)
    c["name"].select(load_if_saved, c["name"], form_outputs, show_progress="hidden")

    def on_load():
        names = experiments()
        st = jobs.status()
        current = st.experiment if st.experiment in names else (names[0] if names else None)
        return [gr.update(choices=names, value=current), *load_if_saved(current)]

    on_page_load(on_load, None, [c["name"], *form_outputs])

    def asr_on_load(current):
        models = _asr_models(settings)
        return gr.update(choices=models, value=current if current in models else (models[0] if models else None))

    on_page_load(asr_on_load, [c["asr_model"]], [c["asr_model"]])
    return c


_STATE_LABELS = {"idle": ("idle", "空闲"), "running": ("running", "运行中"), "done": ("done", "完成"),
                 "cancelled": ("cancelled", "已取消"), "failed": ("failed", "失败")}
_STAGE_LABELS = {"data": ("data", "数据"), "features": ("features", "特征"), "s2": ("SoVITS training", "SoVITS 训练"),
                 "s1": ("GPT training", "GPT 训练"), "select": ("selection", "模型选择")}


def _stage_name(stage: str) -> str:
    return say(*_STAGE_LABELS[stage]) if stage in _STAGE_LABELS else stage


def _status_html(st) -> str:
    """The job as a readable panel: state, stage k of n, one progress bar, the stage's own message (which carries
    the trainer's ETA), elapsed time; the error in red."""
    if st.state == "idle":
        return '<div class="ft-status" data-state="idle">{}</div>'.format(say("No job running.", "没有正在运行的任务。"))
    pct = max(0.0, min(1.0, st.fraction)) * 100
    stage = ""
    if st.stage_number:
        stage = say(" · stage {k}/{n}: {name}", " · 阶段 {k}/{n}：{name}", k=st.stage_number, n=len(st.stages),
                    name=_stage_name(st.stage))
    elapsed = int(st.elapsed)
    state = say(*_STATE_LABELS[st.state]) if st.state in _STATE_LABELS else st.state
    head = (f"<b>{html.escape(state)}</b> · {html.escape(st.experiment)}{html.escape(stage)} · {pct:.0f}% · "
            + say("elapsed {m}:{s:02d}", "已用时 {m}:{s:02d}", m=elapsed // 60, s=elapsed % 60))
    color = {"failed": "#c0392b", "cancelled": "#b7950b", "done": "#1e8449"}.get(st.state, "#2e86c1")
    bar = (f'<div style="background:#e5e8e8;border-radius:4px;height:10px;margin:6px 0">'
           f'<div style="width:{pct:.1f}%;background:{color};height:10px;border-radius:4px"></div></div>')
    msg = f'<div style="font-family:monospace;font-size:0.9em">{html.escape(st.message)}</div>' if st.message else ""
    err = (f'<div style="color:#c0392b;font-weight:bold;margin-top:4px">{html.escape(st.error)}</div>'
           if st.state == "failed" and st.error else "")
    return f'<div class="ft-status" data-state="{st.state}">{head}{bar}{msg}{err}</div>'


def _selection_rows(layout) -> list[list[Any]]:
    runs = sorted(layout.selection_dir.glob("run_*/selection.json")) if layout.selection_dir.is_dir() else []
    if not runs:
        return []
    data = json.loads(runs[-1].read_text(encoding="utf-8"))
    rows = []
    for r in data.get("ranking", []):
        row = []
        for col in SELECTION_COLUMNS:
            v = r.get(col)
            if col in ("gpt", "sovits") and v:
                v = Path(v).name
            if col == "rank" and v is None:
                v = say("baseline", "基线")
            row.append(_fmt(v))
        rows.append(row)
    return rows


def _asr_models(settings) -> list[str]:
    try:
        from gsv_core.asr import model_names

        return model_names(settings.whisper_dir)  # names under WHISPER_DIR (no server paths in the page)
    except Exception:  # noqa: BLE001
        return []
