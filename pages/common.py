"""UI helpers shared by the tabs: user errors shown as readable messages, and the hooks that refresh lists on
every page load."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import traceback
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from gsv_core.errors import GSVError

log = logging.getLogger("gsv.pages")

def _as_gr_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, GSVError):  # an expected user error: a message in the page, one line in the log
        log.info("user error: %s", exc)
        return gr.Error(str(exc), duration=None, title="Cannot do that", print_exception=False)
    log.error("unexpected error in a UI action:\n%s", traceback.format_exc())
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). The app keeps running; the details are in "
                    "the server log.", duration=None, title="Internal error")


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
