"""Assemble the one Gradio app with its five tabs."""
from __future__ import annotations

import gradio as gr

from config import Settings

# What each tab will hold, shown until the tab's own issue lands (no fake controls in the meantime).
PLANNED = {
    "TTS": "Synthesis with GPT + SoVITS weights, reference audio, sampling parameters, side-by-side A/B of two "
    "model pairs, streaming, history and CSV batch export.",
    "ASR": "faster-whisper transcription of a file or folder into a GPT-SoVITS .list, CSV or SRT, with a table to "
    "proofread the text.",
    "Finetune": "One-click data cleaning, feature extraction and SoVITS/GPT finetuning, with checkpoints ranked by "
    "the Eval loop.",
    "Eval": "TTS → ASR → CER/WER, speaker similarity, RTF → report comparing baseline and finetuned models; blind "
    "A/B and MOS listening tests.",
    "RefAudio": "A reference-audio library with parameter sweeps, scoring and saved voice presets.",
}


def build_app(settings: Settings) -> gr.Blocks:
    with gr.Blocks(title="GSV Playground") as app:
        gr.Markdown("# GSV Playground\nGPT-SoVITS 语音克隆工作台 · voice-cloning workbench")
        with gr.Tabs():
            for name, description in PLANNED.items():
                with gr.Tab(name, id=name.lower()):
                    gr.Markdown(f"**{name}** — coming soon: {description}")
    return app
