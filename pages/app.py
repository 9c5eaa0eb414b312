"""Assemble the one Gradio app with its six tabs, all sharing one set of services (one engine, one model registry)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from config import Settings

from .common import collecting_page_loads, guard_number_inputs
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
    from .refaudio import build_refaudio_tab, build_refaudio_unavailable

    if services is None:
        services = Services(settings, asr=ASRService.from_settings(settings))
    # uploads and generated files in Gradio's cache are deleted after a day (checked every hour)
    with gr.Blocks(title="GSV Playground", delete_cache=(3600, 24 * 3600)) as app, \
            collecting_page_loads() as page_loads:
        gr.Markdown("# GSV Playground\nGPT-SoVITS 语音克隆工作台 · voice-cloning workbench")
        warning = services.precision_warning()
        if warning:  # bf16 asked of a CPU that only emulates it: say what it costs here
            gr.Markdown(f"⚠️ **Slow precision setting 精度设置会变慢:** {warning}", elem_id="precision-warning")
        with gr.Tabs():
            with gr.Tab("TTS", id="tts"):
                build_tts_tab(services)
            with gr.Tab("ASR", id="asr"):
                build_asr_tab(settings, services.asr)
            with gr.Tab("Dataset", id="dataset"):
                build_dataset_tab(settings, services)
            with gr.Tab("Finetune", id="finetune"):
                build_finetune_tab(settings, services)
            with gr.Tab("Eval", id="eval"):
                build_eval_tab(settings, services)
            with gr.Tab("RefAudio", id="refaudio"):
                error = services.refaudio_error()
                if error:  # a damaged library must not stop the app: this tab explains, the others work
                    build_refaudio_unavailable(services, error)
                else:
                    build_refaudio_tab(settings, services)
        for fn, inputs, outputs in page_loads:
            app.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    guard_number_inputs(app)
    app.gsv_services = services  # tests and the launcher reach the shared services here
    return app


def launch_kwargs(settings: Optional[Settings] = None) -> dict[str, Any]:
    """Arguments every launch of the app uses: the CJK font stack (CSS) and the upload size cap."""
    kwargs: dict[str, Any] = {"css": CSS}
    if settings is not None:
        kwargs["max_file_size"] = f"{int(settings.max_upload_mb)}mb"
    return kwargs
