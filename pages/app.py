"""Assemble the one Gradio app with its six tabs, all sharing one set of services (one engine, one model registry)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from config import Settings

from .common import collecting_page_loads, guard_number_inputs
from .i18n import T, language_switch, launch_defaults
from .services import Services
from .tts import build_tts_tab

CSS = """
body, .gradio-container { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; }
"""


def build_app(settings: Settings, services: Optional[Services] = None) -> gr.Blocks:
    from gsv_core.asr import ASRService

    from .asr import build_asr_tab
    from .dataset import build_dataset_tab
    from .eval import build_eval_tab
    from .finetune import build_finetune_tab
    from .models import build_models_tab
    from .refaudio import build_refaudio_tab, build_refaudio_unavailable

    if services is None:
        services = Services(settings, asr=ASRService.from_settings(settings))
    # uploads and generated files in Gradio's cache are deleted after a day (checked every hour)
    with gr.Blocks(title="GSV Playground", delete_cache=(3600, 24 * 3600)) as app, \
            collecting_page_loads() as page_loads:
        with gr.Row(equal_height=True):
            gr.Markdown(T("# GSV Playground\nGPT-SoVITS voice-cloning workbench",
                          "# GSV Playground\nGPT-SoVITS 语音克隆工作台"), elem_id="app-title")
            language_switch()
        warning = services.precision_warning()
        if warning:  # bf16 asked of a CPU that only emulates it: say what it costs here (measured figures: English)
            gr.Markdown(T("⚠️ **Slow precision setting:** ", "⚠️ **精度设置会变慢：** "))
            gr.Markdown(warning, elem_id="precision-warning")
        with gr.Tabs():
            with gr.Tab(T("TTS", "语音合成"), id="tts"):
                build_tts_tab(services)
            with gr.Tab(T("ASR", "语音识别"), id="asr"):
                build_asr_tab(settings, services.asr)
            with gr.Tab(T("Dataset", "数据集"), id="dataset"):
                build_dataset_tab(settings, services)
            with gr.Tab(T("Finetune", "微调"), id="finetune"):
                build_finetune_tab(settings, services)
            with gr.Tab(T("Eval", "评测"), id="eval"):
                build_eval_tab(settings, services)
            with gr.Tab(T("RefAudio", "参考音频"), id="refaudio"):
                error = services.refaudio_error()
                if error:  # a damaged library must not stop the app: this tab explains, the others work
                    build_refaudio_unavailable(services, error)
                else:
                    build_refaudio_tab(settings, services)
            with gr.Tab(T("Models", "模型"), id="models"):  # first run: what is installed, downloads
                build_models_tab(services.settings, services)
        for fn, inputs, outputs in page_loads:
            app.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    guard_number_inputs(app)
    _launch_in_both_languages(app)
    app.gsv_services = services  # tests and the launcher reach the shared services here
    return app


def _launch_in_both_languages(app: gr.Blocks) -> None:
    """Every launch of this app (the launcher's, a test's) serves both locale tables and the language switch."""
    original = app.launch

    def launch(*args, **kwargs):
        for name, value in launch_defaults().items():
            kwargs.setdefault(name, value)
        return original(*args, **kwargs)

    app.launch = launch


def launch_kwargs(settings: Optional[Settings] = None) -> dict[str, Any]:
    """Arguments every launch of the app uses: the CJK font stack (CSS) and the upload size cap."""
    kwargs: dict[str, Any] = {"css": CSS}
    if settings is not None:
        kwargs["max_file_size"] = f"{int(settings.max_upload_mb)}mb"
    return kwargs
