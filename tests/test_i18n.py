"""The two interface languages: the locale tables, the request's language, keyed service errors, and the whole app in
a real browser in English and in Chinese (every tab, sub-tab and accordion walked: a label, button, tab title,
info line or placeholder that is in neither locale table fails), the header switch, and an error toast in Chinese.
Screenshots of every tab in both languages go to test-output/i18n/ (look at them)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from gsv_core import messages
from gsv_core.engine.request import RequestError, SynthesisRequest
from pages import i18n

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "i18n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# -- units ----------------------------------------------------------------------------------------------------------
def test_T_registers_both_languages_under_one_key():
    a = i18n.T("Reference audio (test)", "参考音频（测试）")
    assert i18n.EN[a.key] == "Reference audio (test)" and i18n.ZH[a.key] == "参考音频（测试）"
    assert i18n.T("Reference audio (test)", "参考音频（测试）").key == a.key  # the same pair, the same key
    assert i18n.T("Reference audio (test)", "参考（另一种说法）").key != a.key  # another translation, another key
    assert "." not in a.key  # svelte-i18n would read a dot as a nested path
    with pytest.raises(ValueError):
        i18n.T("", "空")
    tables = i18n.i18n().translations_dict
    assert tables["en"] is i18n.EN and tables["zh-CN"] is i18n.ZH and tables["zh-TW"] is i18n.ZH


@pytest.mark.parametrize("cookie, accept, expected", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, "zh-HK", "zh"),
    (None, "en-US,en;q=0.9,zh-CN;q=0.8", "en"),
    (None, None, "en"),
    ("en", "zh-CN", "en"),  # the switch wins over the browser
    ("zh-CN", "en-US", "zh"),
    ("klingon", "zh-TW", "zh"),  # an unknown cookie is ignored
])
def test_language_of_a_request(cookie, accept, expected):
    assert i18n.language_of(cookie, accept) == expected


def test_say_follows_the_request_being_served():
    from gradio.context import LocalContext

    assert i18n.say("{n} files", "{n} 个文件", n=3) == "3 files"  # no request: English (CLIs, tests)
    for cookies, headers, expected in (({}, {"accept-language": "zh-CN"}, "3 个文件"),
                                       ({"gsv_lang": "en"}, {"accept-language": "zh-CN"}, "3 files")):
        token = LocalContext.request.set(SimpleNamespace(cookies=cookies, headers=headers))
        try:
            assert i18n.say("{n} files", "{n} 个文件", n=3) == expected
        finally:
            LocalContext.request.reset(token)


def test_keyed_errors_are_english_for_clis_and_chinese_for_the_page(tmp_path):
    with pytest.raises(RequestError) as info:
        SynthesisRequest(text="  ", ref_audio=None).validate()
    exc = info.value
    assert str(exc) == "Cannot synthesise: the text is empty; no reference audio was given."
    assert messages.render(exc, "zh") == "无法合成：文本为空；没有提供参考音频。"
    assert messages.render(exc, "en") == str(exc)
    assert messages.render(ValueError("plain"), "zh") == "plain"  # no key: the English message
    # the errors a user meets most: a refused path and a reference of the wrong length (the words they name, too)
    import numpy as np

    from config import load_settings
    from gsv_core import audio, paths

    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    with pytest.raises(paths.PathRefused) as refused:
        paths.check_readable(settings, "/etc/passwd", "test CSV")
    assert str(refused.value).startswith("test CSV 'passwd' cannot be used")
    assert messages.render(refused.value, "zh").startswith("无法使用测试集 CSV 'passwd'")
    with pytest.raises(audio.AudioError) as short:
        audio.check_reference(np.zeros(16000, dtype=np.float32), 16000, source="a.wav")
    assert "1.00 s long (too short)" in str(short.value)
    assert "参考音频长 1.00 秒（太短）" in messages.render(short.value, "zh")
    with pytest.raises(KeyError):
        messages.keyed(RequestError, "no.such.key")
    # every catalog entry formats in both languages with the same parameters
    import string

    for key, (en, zh) in messages.CATALOG.items():
        names_en = {f for _, f, _, _ in string.Formatter().parse(en) if f}
        names_zh = {f for _, f, _, _ in string.Formatter().parse(zh) if f}
        assert names_zh <= names_en | {"problems_zh"}, key


def test_head_script_is_injected_first_into_html_pages():
    import asyncio

    page = b"<!doctype html><html><head><meta charset='utf-8'><script src='app.js'></script></head><body/></html>"

    async def app(scope, receive, send):
        ctype = b"text/html; charset=utf-8" if scope["path"] == "/" else b"application/json"
        body = page if scope["path"] == "/" else b"{}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def get(path):
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request"}

        asyncio.run(i18n.LanguageMiddleware(app)({"type": "http", "method": "GET", "path": path}, receive, send))
        return sent

    start, body = get("/")
    data = body["body"]
    assert data.index(b"gsv_lang") < data.index(b"app.js")
    assert dict(start["headers"])[b"content-length"] == str(len(data)).encode()
    assert get("/config")[1]["body"] == b"{}"


# -- the app in a browser, in both languages ------------------------------------------------------------------------
COLLECT_JS = """() => {
  const seen = [];
  const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const add = (kind, text) => { text = (text || '').trim(); if (text) seen.push([kind, text]); };
  document.querySelectorAll('[data-testid="block-info"]').forEach(e => visible(e) && add('label', e.innerText));
  document.querySelectorAll('[role="tab"]').forEach(e => visible(e) && add('tab', e.innerText));
  document.querySelectorAll('button.label-wrap > span:first-child').forEach(e => visible(e) && add('accordion', e.innerText));
  document.querySelectorAll('.gradio-button, button.lg, button.md, button.sm').forEach(
      e => visible(e) && e.id !== 'lang-zh' && e.id !== 'lang-en' && add('button', e.innerText));
  document.querySelectorAll('[data-testid="block-info"] + div.info, .block-info + .info, div.info, span.info').forEach(
      e => visible(e) && add('info', e.innerText));
  document.querySelectorAll('textarea[placeholder], input[placeholder]').forEach(
      e => visible(e) && add('placeholder', e.getAttribute('placeholder')));
  return seen;
}"""

# Gradio's own strings (translated by Gradio itself) that our collectors also see
GRADIO_OWN = {"Clear", "清除", "Submit", "提交", "Upload", "上传", "Drop File Here", "Record", "录制", "Stop", "停止",
              "Drop Audio Here", "- or -", "Click to Upload", "点击上传", "拖放文件到此处", "拖放音频到此处", "或",
              "Search", "搜索", "Type here...", "Select...", "Menu", "菜单"}


def _walk(page, name: str, shots: Path) -> list[tuple[str, str, str]]:
    """Every tab (and sub-tab) opened, every accordion opened, the texts collected; screenshots per top tab."""
    found: list[tuple[str, str, str]] = []
    top = page.locator(".tab-wrapper").first.locator('[role="tab"]')
    for i in range(top.count()):
        tab = top.nth(i)
        title = tab.inner_text().strip()
        tab.click()
        page.wait_for_timeout(400)
        closed = page.locator("button.label-wrap:not(.open)")
        for _ in range(3):  # nested accordions appear as their parents open
            for j in range(closed.count()):
                try:
                    if closed.nth(j).is_visible():
                        closed.nth(j).click(timeout=2000)
                except Exception:  # noqa: BLE001 - it may have moved while others opened
                    pass
            page.wait_for_timeout(200)
        subtabs = page.locator('.tabitem:visible [role="tab"]')
        for j in range(subtabs.count()):
            try:
                subtabs.nth(j).click(timeout=2000)
                page.wait_for_timeout(250)
                found += [(title, k, t) for k, t in page.evaluate(COLLECT_JS)]
            except Exception:  # noqa: BLE001
                pass
        found += [(title, k, t) for k, t in page.evaluate(COLLECT_JS)]
        page.screenshot(path=str(shots / f"{name}_{i}.png"), full_page=True)
    return found


def _is_data(kind: str, text: str) -> bool:
    """Numbers, and placeholders that show a default path or file name (data, the same in both languages)."""
    if text.replace(".", "", 1).isdigit():
        return True
    return kind == "placeholder" and " " not in text and ("/" in text or "." in text)


def _untranslated(found, table: dict[str, str]) -> list:
    allowed = set(table.values()) | GRADIO_OWN
    return sorted({(tab, kind, text) for tab, kind, text in found if text not in allowed and not _is_data(kind, text)})


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")
def test_every_tab_in_both_languages_and_the_switch(tmp_path_factory, parity_dir, tiny_assets):
    from playwright.sync_api import sync_playwright

    from test_app import app_settings, serve_app

    SHOTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("i18n_app")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    app = serve_app(app_settings(root, parity_dir, tiny_assets))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            problems = {}
            for locale, table, tts in (("en-US", i18n.EN, "TTS"), ("zh-CN", i18n.ZH, "语音合成")):
                page = browser.new_page(locale=locale, viewport={"width": 1400, "height": 1100})
                page.goto(app.local_url, wait_until="load")
                page.get_by_role("tab", name=tts).first.wait_for(timeout=30_000)
                found = _walk(page, locale, SHOTS)
                assert len(found) > 150, f"the walk saw only {len(found)} texts in {locale}"
                problems[locale] = _untranslated(found, table)
                page.close()
            assert not problems["en-US"] and not problems["zh-CN"], problems

            # the header switch: an English browser turns Chinese and stays so on reload; the server answers in it too
            page = browser.new_page(locale="en-US", viewport={"width": 1400, "height": 1100})
            page.goto(app.local_url, wait_until="load")
            page.get_by_role("tab", name="TTS").first.wait_for(timeout=30_000)
            page.locator("#lang-zh").click()
            page.get_by_role("tab", name="语音合成").first.wait_for(timeout=30_000)
            page.reload(wait_until="load")
            page.get_by_role("tab", name="语音合成").first.wait_for(timeout=30_000)
            page.locator("#tts-text textarea").fill("   ")
            page.locator("#tts-go").click()
            toast = page.locator(".toast-body").filter(has_text="文本为空").first
            toast.wait_for(state="visible", timeout=60_000)  # Gradio 6's toast shows its type, not our title
            assert "无法合成" in toast.inner_text()
            page.screenshot(path=str(SHOTS / "switched_error_zh.png"), full_page=True)
            page.locator("#lang-en").click()
            page.get_by_role("tab", name="TTS").first.wait_for(timeout=30_000)
            page.close()
            browser.close()
    finally:
        app.close()
