"""Assemble the one Gradio app with its five tabs, all sharing one set of services (one engine, one model registry)."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from config import Settings

from .common import collecting_page_loads
from .services import Services
from .tts import build_tts_tab

CSS = """
body, .gradio-container { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; }
"""


def build_app(settings: Settings, services: Optional[Services] = None) -> gr.Blocks:
    from gsv_core.asr import ASRService

    from .asr import build_asr_tab
    from .eval import build_eval_tab
    from .finetune import build_finetune_tab
    from .refaudio import build_refaudio_tab

    if services is None:
        services = Services(settings, asr=ASRService.from_settings(settings))
    with gr.Blocks(title="GSV Playground") as app, collecting_page_loads() as page_loads:
        gr.Markdown("# GSV Playground\nGPT-SoVITS 语音克隆工作台 · voice-cloning workbench")
        with gr.Tabs():
            with gr.Tab("TTS", id="tts"):
                build_tts_tab(services)
            with gr.Tab("ASR", id="asr"):
                build_asr_tab(settings, services.asr)
            with gr.Tab("Finetune", id="finetune"):
                build_finetune_tab(settings, services)
            with gr.Tab("Eval", id="eval"):
                build_eval_tab(settings, services)
            with gr.Tab("RefAudio", id="refaudio"):
                build_refaudio_tab(settings, services)
        for fn, inputs, outputs in page_loads:
            app.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    app.gsv_services = services  # tests and the launcher reach the shared services here
    return app


def launch_kwargs() -> dict[str, Any]:
    """Arguments every launch of the app uses (the CJK font stack lives in the CSS)."""
    return {"css": CSS}
