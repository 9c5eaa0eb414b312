"""G2PW polyphone disambiguation (ONNX) for the v2 Chinese g2p, as GPT-SoVITS runs it.

A G2PW model folder (upstream's ``GPT_SoVITS/text/G2PWModel``) holds ``g2pW.onnx`` (or ``g2pw.onnx``),
``POLYPHONIC_CHARS.txt`` and ``MONOPHONIC_CHARS.txt`` (``char<TAB>bopomofo+tone`` rows),
``bopomofo_to_pinyin_wo_tune_dict.json`` and optionally ``config.py`` (only its literal ``use_mask`` and
``use_char_phoneme`` settings are read; the file is never executed). ``char_bopomofo_dict.json`` is not read:
upstream loads it but its use changes no result. The model reads BERT token ids made with the
tokenizer of chinese-roberta-wwm-ext-large (any folder ``transformers.AutoTokenizer`` can load).

Per sentence (one g2p piece): the sentence is converted to Taiwan traditional characters (OpenCC ``s2tw``);
polyphonic characters (minus ``data/g2pw_not_polyphonic_chars.txt``) are predicted by the model, monophonic ones
come from the model's table (minus ``data/g2pw_not_monophonic_chars.txt``), everything else from pypinyin (TONE3,
neutral tone 5) of the simplified sentence. The model sees the sentence cropped to ``context_chars`` characters
either side of the span of polyphonic characters, lower-cased, as ``[CLS] tokens [SEP]`` (cut to 512 tokens
around the queried character when longer), with the queried character's id and token position and a mask of the
labels that character may take; the most probable allowed label (bopomofo) is turned into pinyin + tone digit.
Queries on the same cropped sentence share one copy of the token rows (upstream's sentence de-duplication).

The g2p then corrects the model's readings word by word with the polyphone dictionary
(``data/zh_polyphone_words.tsv``, :func:`apply_polyphone_dictionary`).

The folders come from :func:`configure_g2pw` if it was called, else from the environment variables
``GSV_G2PW_DIR`` / ``GSV_BERT_DIR``, else from what :func:`gsv_core.text.configure` set (the settings' ``g2pw_dir`` and
``bert_dir``). :func:`active_g2pw` returns the loaded model, or None after logging one notice when no usable model
is available, in which case the g2p uses pypinyin.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ...errors import GSVError

__all__ = [
    "G2PW",
    "G2PWError",
    "active_g2pw",
    "apply_polyphone_dictionary",
    "configure_g2pw",
    "g2pw_status",
    "reset_g2pw",
]

log = logging.getLogger(__name__)

_DATA = Path(__file__).resolve().parent.parent / "data"
MODEL_FILE_NAMES = ("g2pW.onnx", "g2pw.onnx")
POLYPHONIC_FILE = "POLYPHONIC_CHARS.txt"
MONOPHONIC_FILE = "MONOPHONIC_CHARS.txt"
BOPOMOFO_FILE = "bopomofo_to_pinyin_wo_tune_dict.json"
#: the ONNX graph's inputs, in upstream's order
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask", "phoneme_mask", "char_ids", "position_ids")
_TOKEN_ROW_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
_LATIN_OR_DIGITS = re.compile(r"[a-zA-Z0-9]+")
_SPACES = re.compile(r" +")


class G2PWError(GSVError):
    """A G2PW model folder that is missing, incomplete or unreadable."""


# --------------------------------------------------------------------------------------------------------------
# tables shipped with gsv_core


def _data_lines(name: str) -> list[str]:
    with (_DATA / name).open(encoding="utf-8") as handle:
        rows = [line.rstrip("\r\n") for line in handle]
    return [row for row in rows if row and not row.startswith("#")]


@lru_cache(maxsize=None)
def _polyphone_dictionary() -> dict[str, tuple[str, ...]]:
    table = {}
    for row in _data_lines("zh_polyphone_words.tsv"):
        word, readings = row.split("\t")
        table[word] = tuple(readings.split(" "))
    return table


def apply_polyphone_dictionary(word: str, readings: Sequence[Optional[str]]) -> list[Optional[str]]:
    """Upstream's correction of G2PW readings: a dictionary word replaces all its readings; otherwise each
    character that has an entry of its own takes that entry's first reading."""
    table = _polyphone_dictionary()
    entry = table.get(word)
    if entry is not None:
        return list(entry)
    out = list(readings)
    for i, ch in enumerate(word[: len(out)]):
        own = table.get(ch)
        if own:
            out[i] = own[0]
    return out


# --------------------------------------------------------------------------------------------------------------
# the model


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise G2PWError(f"cannot read {path}: {exc}") from exc
    pairs = []
    for number, line in enumerate(content.strip().split("\n"), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise G2PWError(f"{path}:{number}: expected 'character<TAB>bopomofo', got {line!r}")
        pairs.append((fields[0], fields[1]))
    return pairs


def _read_config(model_dir: Path) -> dict[str, Any]:
    """Literal top-level assignments of the folder's config.py, read without executing it."""
    settings: dict[str, Any] = {"use_mask": True, "use_char_phoneme": False}
    path = model_dir / "config.py"
    if not path.is_file():
        return settings
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise G2PWError(f"cannot parse {path}: {exc}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in settings:
                try:
                    settings[name] = bool(ast.literal_eval(node.value))
                except ValueError as exc:
                    raise G2PWError(f"{path}: {name} is not a literal value") from exc
    return settings


def _find_model_file(model_dir: Path) -> Path:
    for name in MODEL_FILE_NAMES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise G2PWError(f"no {' or '.join(MODEL_FILE_NAMES)} in the G2PW folder {model_dir}")


@dataclass
class _Tokenized:
    tokens: list[str]
    text_to_token: list[Optional[int]]
    token_to_text: list[tuple[int, int]]


class G2PW:
    """A loaded G2PW model: ``predict(sentences)`` -> per sentence, one pinyin (or None) per character."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        tokenizer_dir: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        context_chars: int = 16,
        dedup: bool = True,
        threads: int = 2,
        max_tokens: int = 512,
    ):
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise G2PWError(f"G2PW model folder not found: {model_dir}")
        self.model_dir = model_dir
        self.context_chars = max(0, int(context_chars))
        self.dedup = bool(dedup)
        self.max_tokens = int(max_tokens)
        config = _read_config(model_dir)
        self.use_mask = config["use_mask"]
        self.use_char_phoneme = config["use_char_phoneme"]

        polyphonic = _read_pairs(model_dir / POLYPHONIC_FILE)
        monophonic = _read_pairs(model_dir / MONOPHONIC_FILE)
        try:
            self.bopomofo_to_pinyin: dict[str, str] = json.loads((model_dir / BOPOMOFO_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise G2PWError(f"cannot read {model_dir / BOPOMOFO_FILE}: {exc}") from exc

        if self.use_char_phoneme:
            keys = [f"{ch} {ph}" for ch, ph in polyphonic]
        else:
            keys = [ph for _, ph in polyphonic]
        self.labels: list[str] = sorted(set(keys))
        label_index = {label: i for i, label in enumerate(self.labels)}
        allowed: dict[str, list[int]] = {}
        for (ch, _), key in zip(polyphonic, keys):
            allowed.setdefault(ch, []).append(label_index[key])
        self.chars = sorted(allowed)
        self.char_ids = {ch: i for i, ch in enumerate(self.chars)}
        n_labels = len(self.labels)
        self.masks: dict[str, np.ndarray] = {}
        for ch, ids in allowed.items():
            mask = np.zeros(n_labels, dtype=np.float32)
            if self.use_mask:
                mask[ids] = 1.0
            else:
                mask[:] = 1.0
            self.masks[ch] = mask
        excluded = set(_data_lines("g2pw_not_polyphonic_chars.txt"))
        self.polyphonic = frozenset(self.chars) - excluded
        not_mono = set(_data_lines("g2pw_not_monophonic_chars.txt"))
        self.monophonic = {ch: ph for ch, ph in monophonic if ch not in not_mono}

        self.tokenizer = self._load_tokenizer(model_dir, tokenizer_dir)
        self._to_traditional = self._load_opencc()
        from .norm_tables import traditional_to_simplified

        self._to_simplified = traditional_to_simplified()
        self.session = self._load_session(_find_model_file(model_dir), device, threads)
        self._input_names = [i.name for i in self.session.get_inputs()]
        unknown = [n for n in self._input_names if n not in INPUT_NAMES]
        if unknown:
            raise G2PWError(f"{model_dir}: the ONNX model expects unknown inputs {unknown}")

    # -- loading --------------------------------------------------------------------------------------------------

    @staticmethod
    def _load_tokenizer(model_dir: Path, tokenizer_dir):
        candidates = [Path(tokenizer_dir).expanduser()] if tokenizer_dir else []
        candidates.append(model_dir)
        for folder in candidates:
            if (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file():
                try:
                    from transformers import AutoTokenizer

                    return AutoTokenizer.from_pretrained(str(folder))
                except Exception as exc:  # transformers raises many kinds for a broken folder
                    raise G2PWError(f"cannot load the BERT tokenizer from {folder}: {exc}") from exc
        raise G2PWError(
            "G2PW needs the BERT tokenizer of chinese-roberta-wwm-ext-large: no vocab.txt or tokenizer.json in "
            + ", ".join(str(c) for c in candidates)
        )

    @staticmethod
    def _load_opencc():
        try:
            import opencc
        except ImportError as exc:
            raise G2PWError("G2PW needs the 'opencc' package (pip install opencc)") from exc
        try:
            converter = opencc.OpenCC("s2tw")
        except Exception as exc:  # the bindings raise plain RuntimeError/ValueError for a missing config
            raise G2PWError(f"OpenCC cannot load its 's2tw' conversion: {exc}") from exc
        return converter.convert

    @staticmethod
    def _load_session(path: Path, device: str, threads: int):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise G2PWError("G2PW needs the 'onnxruntime' package (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = max(1, int(threads))
        options.log_severity_level = 3
        available = ort.get_available_providers()
        want_cuda = device == "auto" or str(device).startswith("cuda")
        providers = ["CPUExecutionProvider"]
        if want_cuda and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif str(device).startswith("cuda"):
            log.warning("G2PW: onnxruntime has no CUDA provider here; running on the CPU")
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise G2PWError(f"cannot load the G2PW model {path}: {exc}") from exc

    # -- conversion helpers ---------------------------------------------------------------------------------------

    def _bopomofo_pinyin(self, bopomofo: str) -> Optional[str]:
        tone = bopomofo[-1:]
        if tone not in ("1", "2", "3", "4", "5"):
            log.warning("G2PW: label %r has no tone digit", bopomofo)
            return None
        base = self.bopomofo_to_pinyin.get(bopomofo[:-1])
        if not base:
            log.warning("G2PW: label %r has no pinyin", bopomofo)
            return None
        return base + tone

    @staticmethod
    def _pypinyin_per_char(text: str) -> list[str]:
        """pypinyin TONE3 (neutral 5) of the whole sentence, one entry per character: pypinyin returns a run of
        characters it cannot read as one item, which is spread back over its characters here."""
        from pypinyin import Style, pinyin

        out: list[str] = []
        for (reading,) in pinyin(text, neutral_tone_with_five=True, style=Style.TONE3):
            if reading and text.startswith(reading, len(out)):
                out.extend(reading)
            else:
                out.append(reading)
        return (out + list(text[len(out):]))[: len(text)]

    def _tokenize(self, text: str) -> _Tokenized:
        """BERT tokens of ``text`` (Latin/digit runs as words, other characters one by one, spaces skipped) with
        maps text position -> token index and token -> text span, as g2pW builds them."""
        words: list[str] = []
        word_spans: list[tuple[int, int]] = []
        text_to_token: list[Optional[int]] = []
        pos = 0
        while pos < len(text):
            space = _SPACES.match(text, pos)
            if space:
                text_to_token.extend([None] * (space.end() - pos))
                pos = space.end()
                continue
            run = _LATIN_OR_DIGITS.match(text, pos)
            end = run.end() if run else pos + 1
            text_to_token.extend([len(words)] * (end - pos))
            words.append(text[pos:end])
            word_spans.append((pos, end))
            pos = end
        tokens: list[str] = []
        token_to_text: list[tuple[int, int]] = []
        for word, (start, end) in zip(words, word_spans):
            pieces = self.tokenizer.tokenize(word)
            if not pieces or pieces == ["[UNK]"]:
                tokens.append("[UNK]")
                token_to_text.append((start, end))
                continue
            cursor = start
            for piece in pieces:
                length = len(piece[2:] if piece.startswith("##") else piece)
                token_to_text.append((cursor, cursor + length))
                tokens.append(piece)
                cursor += length
        for index, (start, end) in enumerate(token_to_text):
            for p in range(start, min(end, len(text_to_token))):
                text_to_token[p] = index
        return _Tokenized(tokens, text_to_token, token_to_text)

    def _window(self, text: str, query: int, tok: _Tokenized):
        """(text, query index, tokens, text->token map) cut to ``max_tokens`` around the queried character."""
        keep = self.max_tokens - 2
        if len(tok.tokens) <= keep:
            return text, query, tok.tokens, tok.text_to_token
        center = tok.text_to_token[query]
        first = center - keep // 2
        last = first + keep
        if first < 0:
            first, last = 0, keep
        elif last > len(tok.tokens):
            first, last = len(tok.tokens) - keep, len(tok.tokens)
        start = tok.token_to_text[first][0]
        end = tok.token_to_text[last - 1][1]
        mapping = [i - first if i is not None else None for i in tok.text_to_token[start:end]]
        return text[start:end], query - start, tok.tokens[first:last], mapping

    # -- prediction -----------------------------------------------------------------------------------------------

    def predict(self, sentences: Sequence[str]) -> list[list[Optional[str]]]:
        """For each sentence, one pinyin with tone digit (neutral 5) per character; punctuation and other
        characters pypinyin does not read come back as themselves, a reading that cannot be made is None."""
        results: list[list[Optional[str]]] = []
        queries: list[tuple[int, int, str, int]] = []  # (sentence, character, model text, index in model text)
        for sent_no, sentence in enumerate(sentences):
            traditional = self._to_traditional(sentence)
            if len(traditional) != len(sentence):
                traditional = sentence
            simplified = traditional.translate(self._to_simplified)
            fallback = self._pypinyin_per_char(simplified)
            row: list[Optional[str]] = [None] * len(sentence)
            targets = []
            for i, ch in enumerate(traditional):
                if ch in self.polyphonic:
                    targets.append(i)
                elif ch in self.monophonic:
                    row[i] = self._bopomofo_pinyin(self.monophonic[ch])
                else:
                    row[i] = fallback[i]
            if targets:
                left, right = 0, len(traditional)
                if self.context_chars > 0:
                    left = max(0, targets[0] - self.context_chars)
                    right = min(len(traditional), targets[-1] + self.context_chars + 1)
                window = traditional[left:right]
                queries.extend((sent_no, i, window, i - left) for i in targets)
            results.append(row)
        if queries:
            labels = self._run(queries)
            for (sent_no, char_no, _, _), label in zip(queries, labels):
                if label is not None:
                    if self.use_char_phoneme:
                        label = label.split(" ")[1]
                    results[sent_no][char_no] = self._bopomofo_pinyin(label)
        return results

    def _features(self, queries) -> tuple[dict[str, np.ndarray], list[str], list[bool]]:
        cache: dict[str, Optional[_Tokenized]] = {}
        rows: list[list[int]] = []
        chars: list[int] = []
        positions: list[int] = []
        masks: list[np.ndarray] = []
        texts: list[str] = []
        valid: list[bool] = []
        for _, _, window, index in queries:
            text = window.lower()
            if text not in cache:
                try:
                    cache[text] = self._tokenize(text)
                except Exception as exc:  # a tokenizer failure on odd text: leave these characters to pypinyin
                    log.warning("G2PW: cannot tokenize %r (%s)", text, exc)
                    cache[text] = None
            tok = cache[text]
            if tok is None:
                query_text, query, tokens, mapping = text, index, [], []
            else:
                query_text, query, tokens, mapping = self._window(text, index, tok)
            ch = query_text[query] if 0 <= query < len(query_text) else ""
            if tok is None or ch not in self.char_ids or mapping[query] is None:
                valid.append(False)
                tokens, ch, position = [], self.chars[0], 0
            else:
                valid.append(True)
                position = mapping[query] + 1  # after [CLS]
            rows.append(self.tokenizer.convert_tokens_to_ids(["[CLS]"] + tokens + ["[SEP]"]))
            chars.append(self.char_ids[ch])
            positions.append(position)
            masks.append(self.masks[ch])
            texts.append(query_text if tok is not None else "")
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            attention[i, : len(r)] = 1
        feeds = {
            "input_ids": ids,
            "token_type_ids": np.zeros_like(ids),
            "attention_mask": attention,
            "phoneme_mask": np.stack(masks).astype(np.float32),
            "char_ids": np.asarray(chars, dtype=np.int64),
            "position_ids": np.asarray(positions, dtype=np.int64),
        }
        return feeds, texts, valid

    def _session_run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        outputs = self.session.run(None, {name: feeds[name] for name in self._input_names})
        return np.asarray(outputs[0])

    def _run(self, queries) -> list[Optional[str]]:
        feeds, texts, valid = self._features(queries)
        scores = np.zeros((len(queries), len(self.labels)), dtype=np.float32)
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(text, []).append(i)
        if not self.dedup or len(groups) == len(texts):
            scores = self._session_run(feeds)
        else:
            for members in groups.values():
                idx = np.asarray(members)
                part = {name: value[idx] for name, value in feeds.items()}
                if len(members) > 1:
                    shared = {name: part[name][:1] for name in _TOKEN_ROW_INPUTS}
                    try:
                        scores[idx] = self._session_run({**part, **shared})
                        continue
                    except Exception as exc:  # a graph that does not broadcast one token row over the batch
                        log.info("G2PW: shared token rows not accepted (%s); running full rows", exc)
                        self.dedup = False
                scores[idx] = self._session_run(part)
        best = np.argmax(scores, axis=1)
        return [self.labels[int(b)] if ok else None for b, ok in zip(best, valid)]


# --------------------------------------------------------------------------------------------------------------
# process-wide configuration


@dataclass
class _Config:
    model_dir: Optional[Path] = None
    tokenizer_dir: Optional[Path] = None
    device: str = "auto"
    configured: bool = False


_lock = threading.Lock()
_config = _Config()
_loaded: Optional[G2PW] = None
_unavailable: Optional[str] = None  # why no model can be used (the notice is logged once per configuration)


def configure_g2pw(
    model_dir: str | os.PathLike | None, tokenizer_dir: str | os.PathLike | None = None, *, device: str = "auto"
) -> None:
    """Set the G2PW model folder and BERT tokenizer folder used by ``g2p_zh(..., use_g2pw=True)``.

    Loading happens on first use; ``model_dir=None`` turns G2PW off (the pypinyin path is used, with a notice).
    """
    global _loaded, _unavailable
    with _lock:
        _config.model_dir = Path(model_dir).expanduser() if model_dir else None
        _config.tokenizer_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir else None
        _config.device = device
        _config.configured = True
        _loaded = None
        _unavailable = None


def _default_locations() -> tuple[Optional[Path], Optional[Path], str]:
    """(model folder, tokenizer folder, device) when :func:`configure_g2pw` was not called: the environment
    variables ``GSV_G2PW_DIR`` / ``GSV_BERT_DIR``, else none (the engine and the CLIs configure G2PW from their
    settings with :func:`gsv_core.text.configure`)."""
    env_model, env_tok = os.environ.get("GSV_G2PW_DIR"), os.environ.get("GSV_BERT_DIR")
    if env_model:
        return Path(env_model).expanduser(), Path(env_tok).expanduser() if env_tok else None, "auto"
    return None, None, "auto"


def reset_g2pw() -> None:
    """Forget any configuration and loaded model: the next use reads ``GSV_G2PW_DIR`` / ``GSV_BERT_DIR`` again."""
    global _loaded, _unavailable
    with _lock:
        _config.model_dir = _config.tokenizer_dir = None
        _config.device = "auto"
        _config.configured = False
        _loaded = None
        _unavailable = None


def active_g2pw() -> Optional[G2PW]:
    """The configured G2PW model, loaded on first call; None (after one logged notice) if there is none."""
    global _loaded, _unavailable
    with _lock:
        if _loaded is not None:
            return _loaded
        if _unavailable is not None:
            return None
        device = _config.device
        if _config.configured:
            model_dir, tokenizer_dir = _config.model_dir, _config.tokenizer_dir
        else:
            model_dir, tokenizer_dir, device = _default_locations()
        if model_dir is None:
            reason = "no G2PW model folder is configured"
        elif not model_dir.is_dir():
            reason = f"the G2PW model folder {model_dir} does not exist"
        else:
            try:
                _loaded = G2PW(model_dir, tokenizer_dir, device=device)
                log.info("G2PW model loaded from %s", model_dir)
                return _loaded
            except G2PWError as exc:
                reason = str(exc)
        _unavailable = reason
        log.warning("G2PW unavailable (%s): Chinese polyphones are read with pypinyin instead", reason)
        return None


def g2pw_status() -> str:
    """A one-line description of the G2PW state, for UIs and logs."""
    with _lock:
        if _loaded is not None:
            return f"G2PW loaded from {_loaded.model_dir}"
        if _unavailable is not None:
            return f"G2PW unavailable: {_unavailable}"
        return "G2PW not loaded yet"
