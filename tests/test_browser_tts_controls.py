"""The TTS tab in a real browser (issue 19): the text preview follows the text, language and split method as the user
types (pieces, language per segment, pinyin, phones; a readable line for unreadable text), the advanced section holds
every engine control, and Freeze without an earlier take says what to do."""
from __future__ import annotations

import pytest

from test_browser import CHROMIUM, SHOTS, _error_shown, browser, site  # noqa: F401 - the browser tests' fixtures

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")


def test_tts_preview_live_and_engine_controls(browser, site):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(site["url"], wait_until="load")
    preview = page.locator("#tts-text-preview")
    text = page.locator("#tts-text textarea")
    text.fill("你好。Hello world. 重[chong2]新开始！")
    preview.get_by_text("ni2 hao3").wait_for(timeout=90_000)
    preview.get_by_text("HH AH0 L OW1").wait_for()
    assert "chong2 xin1" in preview.inner_text()
    preview.get_by_text("1 piece(s)").wait_for()  # cut1: one piece of at most 4 sentences
    # another split method: the pieces follow
    page.locator("#tts-split input").click()
    page.get_by_role("option", name="cut5 · at every punctuation mark").click()
    preview.get_by_text("2 piece(s)").wait_for(timeout=30_000)  # short pieces are merged, as upstream does
    page.screenshot(path=str(SHOTS / "tts_text_preview.png"), full_page=True)
    # text the language mode cannot read: a readable line, no traceback
    text.fill("こんにちは")
    preview.get_by_text("Japanese").wait_for(timeout=30_000)
    assert preview.inner_text().startswith("⚠") and "Traceback" not in preview.inner_text()

    # the advanced section holds every engine control
    page.get_by_role("button", name="Advanced (noise").click()
    for elem in ("tts-noise-scale", "tts-batch-size", "tts-parallel", "tts-split-bucket", "tts-sv-ref",
                 "tts-take-id", "tts-stream-mode", "tts-stream-chunk"):
        page.locator(f"#{elem}").wait_for(state="visible")
    page.screenshot(path=str(SHOTS / "tts_advanced.png"), full_page=True)

    # Freeze before any take: what to do
    text.fill("今天天气很好。")
    page.locator("#tts-freeze input[type=checkbox]").check()
    page.locator("#tts-go").click()
    _error_shown(page, "Synthesise once without Freeze first")
    page.close()
