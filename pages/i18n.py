"""The interface language: every string the pages show, in English and Chinese.

Static text (labels, info, placeholders, buttons, tab and accordion titles, Markdown, choice labels) is written
``T("English", "中文")`` next to the component that shows it. ``T`` registers the pair in the two locale tables
(:data:`EN`, :data:`ZH`) under a key derived from the pair and returns Gradio's translation marker, so the browser
shows the text of its locale (Gradio's own ``gr.I18n`` mechanism; the tables are handed to ``launch(i18n=...)``).

Text computed by a handler (status lines, reports, errors) is written ``say("English {n}", "中文 {n}", n=3)``: it
is formatted in the language of the request being served — the header switch's cookie when set, else the browser's
``Accept-Language`` (Chinese for every ``zh*`` locale). Errors raised by services may carry a message key
(:mod:`gsv_core.messages`); :func:`error_text` renders them in the request's language. CLIs stay English.

The switch in the header stores the choice in the ``gsv_lang`` cookie and reloads; a tiny script placed first in the
page's ``<head>`` (by :class:`LanguageMiddleware`) makes the browser's reported language follow that cookie before
Gradio reads it, and maps ``zh``, ``zh-HK``, ``zh-SG``… to the Chinese table.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Optional

import gradio as gr
from gradio.i18n import I18nData

from gsv_core import messages

COOKIE = "gsv_lang"
#: the locale tables: key -> text. Filled by T() while the pages are built.
EN: dict[str, str] = {}
ZH: dict[str, str] = {}
#: Gradio picks a table by the browser's locale; Chinese browsers report one of these
ZH_LOCALES = ("zh-CN", "zh-TW", "zh")


def _key(en: str, zh: str) -> str:
    return "gsv_" + hashlib.sha1(f"{en}\x00{zh}".encode("utf-8")).hexdigest()[:16]


def T(en: str, zh: str) -> I18nData:
    """A static string of the interface in both languages (see the module doc)."""
    if not isinstance(en, str) or not isinstance(zh, str) or not en.strip() or not zh.strip():
        raise ValueError(f"T() needs two non-empty strings, got {en!r}, {zh!r}")
    key = _key(en, zh)
    EN[key], ZH[key] = en, zh
    return I18nData(key)


def i18n() -> gr.I18n:
    """Gradio's translation object over the live tables (read when the app's config is built at launch)."""
    tables: dict[str, dict[str, str]] = {"en": EN}
    for loc in ZH_LOCALES:
        tables[loc] = ZH
    return gr.I18n(**tables)


def known_texts() -> set[str]:
    """Every text either table holds (what a rendered label may read)."""
    return set(EN.values()) | set(ZH.values())


# -- the language of the request being served ---------------------------------------------------------------------
def language_of(cookie: Optional[str], accept_language: Optional[str]) -> str:
    """'zh' or 'en' for a request: the switch's cookie first, else the first language the browser accepts."""
    if cookie in ("zh", "zh-CN", "en"):
        return "zh" if cookie.startswith("zh") else "en"
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag:
            return "zh" if tag.startswith("zh") else "en"
    return "en"


def lang() -> str:
    """The language of the Gradio request being served now ('en' outside a request, e.g. in a CLI or a test)."""
    try:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    except Exception:  # noqa: BLE001 - no request context: English
        request = None
    if request is None:
        return "en"
    try:
        cookies = getattr(request, "cookies", None) or {}
        headers = getattr(request, "headers", None) or {}
        return language_of(cookies.get(COOKIE), headers.get("accept-language"))
    except Exception:  # noqa: BLE001
        return "en"


def say(en: str, zh: str, **params: Any) -> str:
    """Text computed by a handler, in the language of the request being served, formatted with ``params``."""
    text = zh if lang() == "zh" else en
    return text.format(**params) if params else text


def error_text(exc: BaseException) -> str:
    """A service error in the request's language: its message key and parameters when it carries them
    (:mod:`gsv_core.messages`), else its English message."""
    return messages.render(exc, lang())


# -- the header switch ----------------------------------------------------------------------------------------------
_SWITCH_JS = ("() => {{ document.cookie = '{cookie}={value}; path=/; max-age=31536000; SameSite=Lax'; "
              "window.location.reload(); }}")


def language_switch() -> None:
    """Two small buttons in the header that switch the interface language (stored in a cookie, page reloaded)."""
    with gr.Row(elem_id="lang-switch"):
        zh = gr.Button("中文", size="sm", scale=0, min_width=60, elem_id="lang-zh")
        en = gr.Button("English", size="sm", scale=0, min_width=80, elem_id="lang-en")
    zh.click(None, None, None, js=_SWITCH_JS.format(cookie=COOKIE, value="zh-CN"))
    en.click(None, None, None, js=_SWITCH_JS.format(cookie=COOKIE, value="en"))


# runs before Gradio's own scripts: the reported browser language follows the switch's cookie; every Chinese locale
# but Taiwan's reads the zh-CN table (Gradio itself only knows zh-CN and zh-TW)
HEAD_SCRIPT = """<script>(function(){try{
var m=document.cookie.match(/(?:^|; )%s=([^;]+)/);var l=m?decodeURIComponent(m[1]):(navigator.language||"en");
if(/^zh/i.test(l)&&!/^zh-TW$/i.test(l)){l="zh-CN";}
Object.defineProperty(navigator,"language",{get:function(){return l;}});
Object.defineProperty(navigator,"languages",{get:function(){return [l];}});
document.documentElement.setAttribute("lang",l);}catch(e){}})();</script>""" % COOKIE


class LanguageMiddleware:
    """ASGI middleware: puts :data:`HEAD_SCRIPT` first into every HTML page the app serves (Gradio injects its
    ``head=`` argument only after its own scripts have read the browser's language)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []
        passthrough = False

        async def wrapped_send(message):
            nonlocal passthrough
            if message["type"] == "http.response.start":
                headers = dict((k.lower(), v) for k, v in message.get("headers", []))
                ctype = headers.get(b"content-type", b"")
                if not ctype.startswith(b"text/html") or headers.get(b"content-encoding"):
                    passthrough = True
                    await send(message)
                    return
                start.update(message)
                return
            if passthrough:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            data = b"".join(body)
            data = re.sub(rb"<head([^>]*)>", lambda m: m.group(0) + HEAD_SCRIPT.encode("utf-8"), data, count=1)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, wrapped_send)


def launch_defaults() -> dict[str, Any]:
    """What every launch of the app needs for its two languages: the tables and the head-script middleware."""
    from starlette.middleware import Middleware

    return {"i18n": i18n(), "app_kwargs": {"middleware": [Middleware(LanguageMiddleware)]}}
