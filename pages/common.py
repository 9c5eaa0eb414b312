"""UI helpers shared by the tabs: user errors shown as readable messages, and the hooks that refresh lists on
every page load."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from gsv_core.errors import GSVError

from .i18n import EN, T, error_text, say

log = logging.getLogger("gsv.pages")

def _as_gr_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, GSVError):  # an expected user error: a message in the page, one line in the log
        log.info("user error: %s", exc)
        return gr.Error(error_text(exc), duration=None, title=say("Cannot do that", "无法执行"),
                        print_exception=False)
    log.error("unexpected error in a UI action:\n%s", traceback.format_exc())
    return gr.Error(say("Unexpected error ({kind}: {exc}). The app keeps running; the details are in the server log.",
                        "意外错误（{kind}: {exc}）。应用仍在运行；详情见服务器日志。", kind=type(exc).__name__, exc=exc),
                    duration=None, title=say("Internal error", "内部错误"))


def user_errors(fn):
    """Turn GSVErrors (and anything unexpected) raised by an action into a message shown in the page (and an error
    with the same text for API clients); the app keeps serving. Works for plain functions and generators."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user, logged when unexpected
                raise _as_gr_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _as_gr_error(exc) from exc

    return wrapper


def text_language_choices() -> list[tuple[Any, str]]:
    """Dropdown choices of the text language modes (zh, all_zh, en, ja, ...), named in the user's language."""
    from gsv_core import languages

    return [(T(f"{languages.display_name(c, 'en')} · {c}", f"{languages.display_name(c, 'zh')} · {c}"), c)
            for c in languages.text_modes()]


def split_method_choices() -> list[tuple[Any, str]]:
    """Dropdown choices of the split methods cut0..cut5, described in the user's language."""
    from .services import SPLIT_LABELS, SPLIT_LABELS_ZH

    return [(T(SPLIT_LABELS[k], SPLIT_LABELS_ZH[k]), k) for k in SPLIT_LABELS]


# -- page-load hooks ----------------------------------------------------------------------------------------------
# A tab registers what must be re-read whenever a browser (re)loads the page: dropdown choices (models, roles,
# products, experiments) and the state of background jobs. build_app() wires them to the Blocks' load event, so a
# reload never shows lists as they were when the server started.
_LOAD_HOOKS: list[list] = []


@contextlib.contextmanager
def collecting_page_loads() -> Iterator[list]:
    hooks: list = []
    _LOAD_HOOKS.append(hooks)
    try:
        yield hooks
    finally:
        _LOAD_HOOKS.pop()


def on_page_load(fn: Callable, inputs: Sequence[Any] | None, outputs: Sequence[Any]) -> None:
    """Run ``fn(*inputs)`` on every page load and show its return values in ``outputs``."""
    if _LOAD_HOOKS:
        _LOAD_HOOKS[-1].append((fn, list(inputs or []), list(outputs)))


def shown_path(path: Any) -> str:
    """A folder as the page shows it in labels and hints (which Gradio's /config publishes): relative to the project
    or the working folder when inside them, else ``…/parent/name`` — never the host's absolute path."""
    from config import PROJECT_ROOT

    p = Path(str(path)).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    for base in (PROJECT_ROOT, Path.cwd()):
        try:
            return p.resolve().relative_to(base.resolve()).as_posix() or "."
        except (ValueError, OSError):
            continue
    return "…/" + "/".join(p.parts[-2:]) if len(p.parts) > 2 else "…/" + p.name


def guard_number_inputs(app: gr.Blocks) -> None:
    """Every Number and Slider of ``app`` refuses NaN and infinities with a message naming the field (JSON's
    ``NaN``/``Infinity`` reach the API as floats, and Gradio's own rounding would fail with an unnamed error)."""
    for block in app.blocks.values():
        if not isinstance(block, (gr.Number, gr.Slider)):
            continue
        original = block.preprocess

        label = block.label
        if label is not None and getattr(label, "key", None) in EN:  # a T() label: its English text
            label = EN[label.key]

        def preprocess(payload, _original=original, _label=label or block.elem_id or "a number field"):
            if isinstance(payload, float) and not math.isfinite(payload):
                raise gr.Error(say("{field}: expected a finite number, got {value}",
                                   "{field}：需要一个有限的数值，收到 {value}", field=_label, value=payload),
                               print_exception=False)
            return _original(payload)

        block.preprocess = preprocess
