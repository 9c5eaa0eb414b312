"""The "import the reference pool into a RefAudio role" row, shared by the Dataset and Finetune tabs: the pool
(``refpool.list``, clean clips of the chosen length picked by the cleaning report) goes into an existing or a new
role of the RefAudio library in one click, through ``RefAudioService.import_server_list`` (the path policy checks
the list and every clip it names)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import gradio as gr

from .common import on_page_load, user_errors
from .i18n import T, say


def _roles(services: Any) -> list[tuple[str, int]]:
    try:
        svc = services.refaudio
        return [(say("{role} ({n} clips)", "{role}（{n} 个片段）", role=f"{r['category']}/{r['name']}", n=r["clips"]),
                 r["id"]) for r in svc.list_roles()]
    except Exception:  # noqa: BLE001 - a damaged library: the RefAudio tab explains; here the list stays empty
        return []


def import_pool(services: Any, pool: Optional[Path], role: Any, new_role: str, category: str) -> str:
    """Import ``pool`` into ``role`` (an id) or a new role ``CATEGORY/NAME`` typed in ``new_role``; returns the
    import report's summary."""
    from gsv_core.errors import GSVError

    if pool is None or not Path(pool).is_file():
        raise GSVError(say("there is no reference pool yet: run the cleaning report first (it picks clean clips of "
                           "the chosen length into refpool.list)",
                           "还没有参考池：请先运行清洗报告（它会把时长合适的干净片段选入 refpool.list）"))
    svc = services.refaudio
    typed = (new_role or "").strip()
    if typed:
        cat, _, name = typed.rpartition("/")
        role_id = svc.create_role(cat.strip() or "default", name.strip())
    elif role not in (None, ""):
        role_id = int(role)
    else:
        raise GSVError(say("choose a RefAudio role, or type a new one as CATEGORY/NAME",
                           "请选择一个参考音频角色，或按“分类/名称”输入一个新角色"))
    report = svc.import_server_list(role_id, str(pool), (category or "").strip() or "refpool")
    return say("Reference pool → RefAudio role #{role}: {summary}", "参考池 → 参考音频角色 #{role}：{summary}",
               role=role_id, summary=report.summary())


def build_refpool_import(services: Any, pool_of: Callable[..., Optional[Path]], inputs: list, prefix: str,
                         api_name: str) -> dict[str, Any]:
    """The row; ``pool_of(*inputs)`` names the pool to import (the current dataset's or experiment's)."""
    c: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        roles = _roles(services)
        c["role"] = gr.Dropdown(roles, value=None, label=T("RefAudio role", "参考音频角色"), scale=2, allow_custom_value=True,
                                elem_id=f"{prefix}-pool-role")
        c["new_role"] = gr.Textbox(label=T("…or a new role (CATEGORY/NAME)", "…或新角色（分类/名称）"), scale=2,
                                   elem_id=f"{prefix}-pool-new-role")
        c["category"] = gr.Textbox(value="refpool", label=T("clip category", "片段分类"), scale=1)
        c["button"] = gr.Button(T("Import reference pool into RefAudio", "把参考池导入参考音频库"), scale=2,
                                elem_id=f"{prefix}-pool-import")
    c["result"] = gr.Markdown(elem_id=f"{prefix}-pool-result")

    @user_errors
    def run(*values):
        n = len(inputs)
        pool = pool_of(*values[:n])
        role, new_role, category = values[n:]
        message = import_pool(services, pool, role, new_role, category)
        return message, gr.update(choices=_roles(services))

    c["button"].click(run, inputs + [c["role"], c["new_role"], c["category"]], [c["result"], c["role"]],
                      api_name=api_name)
    on_page_load(lambda: gr.update(choices=_roles(services)), None, [c["role"]])
    return c
