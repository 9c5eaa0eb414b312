"""Assemble the one Gradio app with its five tabs, all sharing one set of services (one engine, one model registry)."""
from __future__ import annotations

import importlib.util
from typing import Any, Optional

import gradio as gr

from config import Settings

from .common import collecting_page_loads, planned_tab
from .services import Services
from .tts import build_tts_tab

CSS = """
body, .gradio-container { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; }
"""


def _asr_parts() -> tuple[Optional[Any], Optional[Any]]:
    """(build_asr_tab, AsrService) once the ASR tab has landed, else (None, None)."""
    try:
        if importlib.util.find_spec("pages.asr") is None or importlib.util.find_spec("eval.asr") is None:
            return None, None
    except ModuleNotFoundError:
        return None, None
    from eval import asr as asr_module

    from .asr import build_asr_tab

    return build_asr_tab, asr_module.ASRService


def build_app(settings: Settings, services: Optional[Services] = None) -> gr.Blocks:
    build_asr_tab, asr_service_cls = _asr_parts()
    if services is None:
        asr = asr_service_cls.from_settings(settings) if asr_service_cls is not None else None
        services = Services(settings, asr=asr)
    with gr.Blocks(title="GSV Playground") as app, collecting_page_loads() as page_loads:
        gr.Markdown("# GSV Playground\nGPT-SoVITS 语音克隆工作台 · voice-cloning workbench")
        with gr.Tabs():
            with gr.Tab("TTS", id="tts"):
                build_tts_tab(services)
            with gr.Tab("ASR", id="asr"):
                if build_asr_tab is not None and services.asr is not None:
                    build_asr_tab(settings, services.asr)
                else:
                    planned_tab("ASR")
            with gr.Tab("Finetune", id="finetune"):
                from .finetune import build_finetune_tab

                build_finetune_tab(settings, services)
            with gr.Tab("Eval", id="eval"):
                if services.asr is not None:
                    from .eval import build_eval_tab

                    build_eval_tab(settings, services)
                else:
                    planned_tab("Eval")
            with gr.Tab("RefAudio", id="refaudio"):
                from .refaudio import build_refaudio_tab

                build_refaudio_tab(settings, services)
        for fn, inputs, outputs in page_loads:
            app.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    app.gsv_services = services  # tests and the launcher reach the shared services here
    return app


def launch_kwargs() -> dict[str, Any]:
    """Arguments every launch of the app uses (the CJK font stack lives in the CSS)."""
    return {"css": CSS}
