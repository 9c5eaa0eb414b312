"""Command line of the text front end.

    python -m gsv_core.text "今天是2024年3月15日。" --lang zh --version v2          # readable report
    python -m gsv_core.text "Hello 世界" --json                                    # one JSON object
    python -m gsv_core.text "今日はいい天気ですね。" --lang ja                      # also ko, yue, all_*, auto_yue
    python -m gsv_core.text --lang zh < sentences.txt > phones.jsonl               # one JSON object per line

With a text argument, errors are printed as one line on stderr and the exit code is 1. Without one, every line of
standard input is processed in this one process and printed as one JSON object per line, in order; a line that
fails gives ``{"text": ..., "error": ...}`` and processing continues (exit code 1 if any line failed). Blank input
lines give ``{"text": "", "error": ...}`` so that output lines match input lines.
"""
from __future__ import annotations

import argparse
import json
import sys

from gsv_core.errors import GSVError


def _parser() -> argparse.ArgumentParser:
    from gsv_core.text.frontend import LANGS
    from gsv_core.text.split import METHODS

    p = argparse.ArgumentParser(
        prog="python -m gsv_core.text",
        description="Show how GSV reads a text: normalised text, language segments, phones, word2ph, phone ids.",
    )
    p.add_argument("text", nargs="?", help="the text; omit it to read one text per line from standard input")
    p.add_argument("--lang", default="zh", choices=LANGS,
                   help="text mode (default: zh = Chinese mixed with English; ja/ko/yue the same for Japanese, Korean, "
                        "Cantonese; all_* = everything but plain English in that language; auto/auto_yue = detect)")
    p.add_argument("--version", default="v2", help="model version: v1, v2, v2Pro, v2ProPlus (default: v2)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the readable report")
    p.add_argument("--split", metavar="METHOD", choices=sorted(METHODS),
                   help="split the text first like the inference front end (cut0..cut5) and report every piece")
    p.add_argument("--user-dict", metavar="FILE", help="user dictionary file (default: config user_dict_path)")
    p.add_argument("--no-user-dict", action="store_true", help="ignore the configured user dictionary")
    p.add_argument("--g2pw", choices=("on", "off", "config"), default="config",
                   help="polyphone model G2PW for Chinese: on, off (pypinyin only) or config (use_g2pw setting, default)")
    p.add_argument("--no-tags", action="store_true", help="read [brackets] literally instead of as tags")
    return p


def _options(args) -> dict:
    """Front-end options from the flags and the application's settings (this CLI is a composition root: the library
    reads no settings itself)."""
    from config import settings

    from gsv_core.text import configure
    from gsv_core.text.tags import configured_user_dict, load_user_dict

    configure(settings)
    if args.no_user_dict:
        user_dict = None
    elif args.user_dict:
        user_dict = load_user_dict(args.user_dict)
    else:
        user_dict = configured_user_dict(settings.user_dict_path)
    use_g2pw = {"on": True, "off": False, "config": bool(settings.use_g2pw)}[args.g2pw]
    return {"user_dict": user_dict, "use_g2pw": use_g2pw, "tags": not args.no_tags}


def _results(text: str, args, options: dict):
    from gsv_core.text.frontend import preprocess_text, text_to_phones

    if args.split:
        return preprocess_text(text, args.lang, args.version, args.split, **options)
    return [text_to_phones(text, args.lang, args.version, **options)]


def _as_json(text: str, results) -> dict:
    if len(results) == 1:
        out = results[0].to_dict()
        out["text"] = text
        return out
    segments = [s for r in results for s in r.segments]
    all_zh = bool(segments) and all(s.word2ph is not None for s in segments)
    return {
        "text": text,
        "norm_text": "".join(r.norm_text for r in results),
        "phones": [p for r in results for p in r.phones],
        "word2ph": [n for s in segments for n in s.word2ph] if all_zh else None,
        "phone_ids": [i for r in results for i in r.phone_ids],
        "pieces": [r.to_dict() for r in results],
    }


def _report(results, out) -> None:
    from gsv_core.text.frontend import Segment

    for n, res in enumerate(results, 1):
        if len(results) > 1:
            print(f"== piece {n}: {res.text!r}", file=out)
        for item in res.items:
            if not isinstance(item, Segment):
                print(f"[pause {item.seconds:g} s]", file=out)
                continue
            print(f"segment   {item.lang}: {item.text!r}", file=out)
            print(f"norm_text {item.norm_text}", file=out)
            print(f"phones    {' '.join(item.phones)}", file=out)
            if item.word2ph is not None:
                print(f"word2ph   {' '.join(map(str, item.word2ph))}", file=out)
            print(f"phone_ids {' '.join(map(str, item.phone_ids))}", file=out)
    if len(results) == 1 and len(results[0].segments) > 1:
        res = results[0]
        print(f"-- all: {len(res.phones)} phones, norm_text {res.norm_text}", file=out)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = _options(args)
    except GSVError as exc:
        print(f"error: {exc}".replace("\n", " | "), file=sys.stderr)
        return 1
    if args.text is not None:
        try:
            results = _results(args.text, args, options)
        except GSVError as exc:
            print(f"error: {exc}".replace("\n", " | "), file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(_as_json(args.text, results), ensure_ascii=False))
        else:
            _report(results, sys.stdout)
        return 0
    failed = False
    for number, raw in enumerate(sys.stdin, 1):
        text = raw.rstrip("\n").rstrip("\r")
        try:
            obj = _as_json(text, _results(text, args, options))
        except GSVError as exc:
            failed = True
            obj = {"text": text, "error": str(exc)}
            print(f"line {number}: error: {exc}".replace("\n", " | "), file=sys.stderr)
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
