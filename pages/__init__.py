"""Gradio pages (UI only). Each tab module exposes ``build(settings)`` and calls services, never models."""
