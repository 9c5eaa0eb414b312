"""Japanese, Korean and Cantonese parity with upstream GPT-SoVITS (fixture folder ``GSV_PARITY_LANG_DIR``, default
``<repo>/../shared/fixtures/gsv_parity_lang``; see its README).

Everything is discovered from the files ``text_<lang>_frontend.json``: the languages, the sentences (``sentences``
and the whole-sentence ``v2`` entry of every ``dispatch`` record), the symbol-table versions recorded per sentence
(``v1``, ``v2``, ...) and, for the language dispatch, the text modes recorded per record. No expectation is written
here, so another fixture set of the same format runs unchanged.

* front end (``gsv_core.text.clean_text``, i.e. ``clean_ja`` / ``clean_ko`` / ``clean_yue``): ``norm_text``, ``phones``, ``word2ph`` and ``phone_ids``
  must be identical for at least 99.5 % of the sentences per language and version; an entry where upstream
  raised must raise a clear error here (a ``GSVError``);
* dispatch (``text_to_phones(text, mode, "v2")``, records marked ``segments_detector_invariant`` only): the
  ``(lang, text)`` segments of upstream's last pass and, for every non-English segment, ``norm_text``,
  ``phone_ids`` and ``word2ph``, plus the concatenated non-English phone ids; 99.5 % per language and mode.

Every mismatch is listed in the failure message (and printed otherwise).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gsv_core.errors import GSVError
from gsv_core.text import text_to_phones
from gsv_core.text.symbols import phones_to_ids

MIN_IDENTICAL = 0.995
_FILE_RE = re.compile(r"text_(\w+)_frontend\.json$")


def _fixture_dir() -> Path:
    raw = os.environ.get("GSV_PARITY_LANG_DIR")
    if raw:
        return Path(raw).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "gsv_parity_lang").resolve()


def _languages() -> list[str]:
    found = sorted(m.group(1) for p in _fixture_dir().glob("text_*_frontend.json") if (m := _FILE_RE.search(p.name)))
    return found or ["<no fixture files>"]


def _cleaner(lang: str):
    """upstream's clean_text(text, lang, version) for this fixture language (gsv_core.text.clean_text)."""
    from gsv_core.languages import LANGUAGES
    from gsv_core.text import clean_text

    if lang not in LANGUAGES:
        pytest.fail(f"fixture language {lang!r} has no front end in gsv_core.text")
    return lambda text, version: clean_text(text, lang, version)


def _load(parity_lang_dir: Path, lang: str) -> dict:
    path = parity_lang_dir / f"text_{lang}_frontend.json"
    if not path.is_file():
        pytest.fail(f"{path} not found")
    return json.loads(path.read_text(encoding="utf-8"))


def _versions(entry: dict) -> list[str]:
    return sorted(
        k for k, v in entry.items()
        if re.fullmatch(r"v\d\w*", k) and isinstance(v, dict) and ("phones" in v or "error" in v)
    )


def _report(kind: str, bad: list[str], checked: int) -> None:
    assert checked > 0, f"no {kind} cases found in the fixture file"
    message = f"{kind}: {len(bad)} of {checked} differ:\n" + "\n".join(bad)
    assert len(bad) <= (1 - MIN_IDENTICAL) * checked, message
    if bad:
        print(message)


@pytest.mark.parametrize("lang", _languages())
def test_front_end_parity(parity_lang_dir, lang):
    data = _load(parity_lang_dir, lang)
    clean = _cleaner(lang)
    cases = [("sentence", c) for c in data.get("sentences", [])]
    cases += [("dispatch", c) for c in data.get("dispatch", []) if _versions(c)]
    per_version: dict[str, tuple[list[str], list[int]]] = {}
    for kind, case in cases:
        for version in _versions(case):
            bad, count = per_version.setdefault(version, ([], [0]))
            count[0] += 1
            expected = case[version]
            where = f"  {kind} #{case.get('id')} {version} {case['text']!r}"
            try:
                phones, word2ph, norm_text = clean(case["text"], version)
            except GSVError as exc:
                if "error" not in expected:
                    bad.append(f"{where}: raised {type(exc).__name__}: {exc}")
                continue
            if "error" in expected:
                bad.append(f"{where}: upstream raised {expected['error']!r}, we returned {phones}")
                continue
            got = {
                "norm_text": norm_text,
                "phones": list(phones),
                "word2ph": None if word2ph is None else list(word2ph),
                "phone_ids": phones_to_ids(phones, version),
            }
            diff = [k for k in got if got[k] != expected.get(k)]
            if diff:
                detail = "; ".join(f"{k}: ours {got[k]} / upstream {expected.get(k)}" for k in diff)
                bad.append(f"{where}: {detail}")
    assert per_version, f"text_{lang}_frontend.json has no sentences with recorded versions"
    for version, (bad, count) in sorted(per_version.items()):
        _report(f"{lang} {version} front end", bad, count[0])


def _segment_mismatch(res, expected_pass: dict, record: dict) -> str:
    got = [(s.lang, s.text) for s in res.segments]
    want = [(s["lang"], s["text"]) for s in expected_pass["segments"]]
    if got != want:
        return f"segments ours {got} / upstream {want}"
    for ours, theirs in zip(res.segments, expected_pass["segments"]):
        if ours.lang == "en" or "phone_ids" not in theirs:
            continue
        for key, value in (("norm_text", ours.norm_text), ("phone_ids", ours.phone_ids), ("word2ph", ours.word2ph)):
            if key in theirs and value != theirs[key]:
                return f"segment {ours.text!r} {key}: ours {value} / upstream {theirs[key]}"
    non_en = [i for s in res.segments if s.lang != "en" for i in s.phone_ids]
    if "phone_ids_non_en" in record and non_en != record["phone_ids_non_en"]:
        return f"non-English phone ids: ours {non_en} / upstream {record['phone_ids_non_en']}"
    return ""


@pytest.mark.parametrize("lang", _languages())
def test_language_dispatch_parity(parity_lang_dir, lang):
    data = _load(parity_lang_dir, lang)
    per_mode: dict[str, tuple[list[str], list[int]]] = {}
    for record in data.get("dispatch", []):
        for mode, rec in sorted(record.get("modes", {}).items()):
            if not rec.get("segments_detector_invariant") or not rec.get("passes"):
                continue
            bad, count = per_mode.setdefault(mode, ([], [0]))
            count[0] += 1
            where = f"  dispatch #{record.get('id')} {mode} {record['text']!r}"
            try:
                res = text_to_phones(record["text"], mode, "v2", user_dict=None, use_g2pw=False, tags=False)
            except GSVError as exc:
                bad.append(f"{where}: raised {type(exc).__name__}: {exc}")
                continue
            problem = _segment_mismatch(res, rec["passes"][-1], rec)
            if problem:
                bad.append(f"{where}: {problem}")
    if not per_mode:
        pytest.skip(f"text_{lang}_frontend.json has no detector-invariant dispatch records")
    for mode, (bad, count) in sorted(per_mode.items()):
        _report(f"{lang} dispatch {mode}", bad, count[0])
