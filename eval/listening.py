"""Blind listening tests over an evaluation run folder: MOS, similarity MOS (SMOS), A/B preference and CMOS.

A test lives in ``RUN_DIR/listening/<test>/``::

    test.json      what is rated: kind, systems, items (system names and texts stay here, never shown to raters)
    stimuli/       copies of the rated audio under anonymous names (no system name, no sentence id)
    answers.jsonl  one line per answer, appended and fsynced at once (a closed tab loses nothing; the last
                   answer of a rater for an item counts, so going back and changing an answer is possible)
    results.json   summary statistics with bootstrap 95% CIs (eval.stats), results.csv the same as a table,
    answers.csv    every counted answer, de-randomised (system names restored)

Kinds:

* ``mos``  — naturalness 1..5 of one sample;
* ``smos`` — similarity 1..5 of one sample to its reference audio;
* ``ab``   — which of two samples (same sentence, two systems) is better: ``A``, ``B`` or ``tie``;
* ``cmos`` — comparative score -3..+3 of the right sample (B) against the left one (A).

Each rater gets the items in an order shuffled with a seed derived from the test seed and the rater's name
(reproducible for that rater, different across raters); for A/B and CMOS which system plays on the left is drawn
per item from the same generator and undone when scoring: A/B results are preferences per system, CMOS is the score
of the test's second system against its first (positive: the second is better).

:func:`write_listening_summary` writes ``RUN_DIR/listening/index.html`` (+ ``summary.json``) over every test of a run,
for the evaluation report to link. No gradio here: ``pages/listening.py`` is only the UI.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from gsv_core.errors import GSVError
from gsv_core.fileio import write_json_atomic

KINDS = ("mos", "smos", "ab", "cmos")
KIND_LABELS = {"mos": "MOS (naturalness 1-5)", "smos": "SMOS (similarity to the reference 1-5)",
               "ab": "A/B preference", "cmos": "CMOS (-3..+3)"}
AB_CHOICES = ("A", "B", "tie")
MOS_SCALE = {1: "1 Bad", 2: "2 Poor", 3: "3 Fair", 4: "4 Good", 5: "5 Excellent"}
CMOS_SCALE = {-3: "-3 A much better", -2: "-2 A better", -1: "-1 A slightly better", 0: "0 About the same",
              1: "+1 B slightly better", 2: "+2 B better", 3: "+3 B much better"}
_NAME = re.compile(r"[\w\-.]+")
_LOCK = threading.Lock()  # answers of several raters (threads of one app) are appended one at a time


class ListeningError(GSVError):
    """A user-caused listening-test failure (bad run folder, unknown test, invalid answer)."""


# ----------------------------------------------------------------------------------------------------------------
# creation

def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or not _NAME.fullmatch(name) or name in (".", ".."):
        raise ListeningError(f"{what} {name!r} may only hold letters, digits, '_', '-' and '.' (and not be empty)")
    return name


def _check_kind(kind: str) -> str:
    k = (kind or "").strip().lower().replace("/", "")
    if k not in KINDS:
        raise ListeningError(f"unknown test kind {kind!r} (use {', '.join(KINDS)})")
    return k


def listening_dir(run_dir: str | os.PathLike, name: str) -> Path:
    return Path(run_dir).expanduser() / "listening" / _check_name(name, "test name")


def _token(seed: int, *parts: Any) -> str:
    return hashlib.sha256(":".join(map(str, (seed,) + parts)).encode()).hexdigest()[:12]


def _suffix(path: Path) -> str:
    return path.suffix.lower() if path.suffix else ".wav"


def _write_test(run_dir: Path, name: str, kind: str, systems: list[str], items: list[dict], seed: int,
                source: str) -> "ListeningTest":
    """Copy the stimuli under anonymous names and write test.json (atomically, last)."""
    if not items:
        raise ListeningError("the test would have no items: nothing to rate")
    tdir = listening_dir(run_dir, name)
    if (tdir / "test.json").is_file():
        raise ListeningError(f"a listening test named {name!r} already exists in {run_dir}; open it or choose "
                             "another name")
    missing = []
    for it in items:
        for key in ("audio", "audio_a", "audio_b", "ref"):
            p = it.get(key)
            if p and not Path(p).is_file():
                missing.append(f"{it['id']}: {p}")
    if missing:
        raise ListeningError(f"{len(missing)} audio file(s) not found: " + "; ".join(missing[:10])
                             + (" ..." if len(missing) > 10 else ""))
    stim = tdir / "stimuli"
    stim.mkdir(parents=True, exist_ok=True)
    copies: dict[str, str] = {}

    def anon(path: str) -> str:
        src = str(Path(path).resolve())
        if src not in copies:
            rel = f"stimuli/{_token(seed, name, src)}{_suffix(Path(src))}"
            shutil.copyfile(src, tdir / rel)
            copies[src] = rel
        return copies[src]

    out = []
    for i, it in enumerate(items):
        rec = dict(key=f"i{i:04d}", id=it["id"], text=it.get("text", ""))
        for key in ("system", "system_a", "system_b", "sample"):
            if key in it:
                rec[key] = it[key]
        for key in ("audio", "audio_a", "audio_b", "ref"):
            if it.get(key):
                rec[key] = anon(it[key])
                rec[f"source_{key}"] = str(it[key])
        out.append(rec)
    spec = dict(name=name, kind=kind, systems=systems, seed=int(seed), created=time.strftime("%Y-%m-%d %H:%M:%S"),
                source=source, items=out)
    write_json_atomic(tdir / "test.json", spec)
    return ListeningTest(tdir)


def _run_references(run_dir: Path, config: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(reference audio per sentence id from the test CSV, reference audio per system)."""
    per_item: dict[str, str] = {}
    csv_path = config.get("test_csv")
    if csv_path and Path(csv_path).is_file():
        from eval.run import EvalError, read_test_csv

        try:
            per_item = {it.id: it.ref_audio for it in read_test_csv(csv_path) if it.ref_audio}
        except EvalError:
            per_item = {}
    per_system = {s["name"]: s.get("ref_audio") or "" for s in config.get("systems", [])}
    return per_item, per_system


def create_test_from_run(run_dir: str | os.PathLike, kind: str, name: Optional[str] = None,
                         systems: Optional[Sequence[str]] = None, samples: Optional[int] = 1,
                         max_items: Optional[int] = None, seed: int = 0) -> "ListeningTest":
    """A test over the chosen try of every finished utterance of an evaluation run.

    ``systems``: which systems (default all for MOS/SMOS, the first two for A/B and CMOS); ``samples``: how many
    samples per sentence to include (None = all); ``max_items``: keep the first N sentences (by sentence order)."""
    from eval.run import load_results

    run_dir = Path(run_dir).expanduser()
    kind = _check_kind(kind)
    name = _check_name(name or kind, "test name")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ListeningError(f"{run_dir} is not an evaluation run folder (no config.json)")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    rows = [r for r in load_results(run_dir) if r.get("audio")]
    if not rows:
        raise ListeningError(f"{run_dir} has no finished utterances yet (results.jsonl is empty)")
    present = [s["name"] for s in config.get("systems", []) if any(r["system"] == s["name"] for r in rows)]
    if systems:
        systems = [s.strip() for s in systems if s and s.strip()]
        unknown = [s for s in systems if s not in present]
        if unknown:
            raise ListeningError(f"system(s) {', '.join(unknown)} not in this run (it has {', '.join(present)})")
    else:
        systems = present if kind in ("mos", "smos") else present[:2]
    if kind in ("ab", "cmos") and (len(systems) != 2 or systems[0] == systems[1]):
        raise ListeningError(f"{kind.upper()} compares exactly two different systems; this run has "
                             f"{', '.join(present)} and {len(systems)} were chosen")
    ids = list(dict.fromkeys(r["id"] for r in rows))
    if max_items:
        ids = ids[:int(max_items)]
    keep = set(ids)
    by_key = {(r["system"], r["id"], int(r.get("sample", 0))): r for r in rows
              if r["id"] in keep and (samples is None or int(r.get("sample", 0)) < samples)}

    def audio(r):
        return str(run_dir / r["audio"])

    items: list[dict] = []
    if kind in ("mos", "smos"):
        ref_item, ref_system = _run_references(run_dir, config)
        no_ref = []
        order = sorted(by_key, key=lambda k: (ids.index(k[1]), k[2], systems.index(k[0]) if k[0] in systems else -1))
        for system, rid, sample in order:
            r = by_key[(system, rid, sample)]
            if system not in systems:
                continue
            it = dict(id=rid, system=system, sample=sample, text=r.get("text", ""), audio=audio(r))
            if kind == "smos":
                ref = ref_item.get(rid) or ref_system.get(system)
                if not ref:
                    no_ref.append(f"{system}/{rid}")
                    continue
                it["ref"] = ref
            items.append(it)
        if no_ref:
            raise ListeningError(f"SMOS needs a reference audio for every sample; none for {', '.join(no_ref[:10])}")
    else:
        sa, sb = systems
        for rid in ids:
            for sample in sorted({k[2] for k in by_key if k[1] == rid}):
                ra, rb = by_key.get((sa, rid, sample)), by_key.get((sb, rid, sample))
                if ra and rb:
                    items.append(dict(id=rid, sample=sample, text=ra.get("text", ""), system_a=sa, system_b=sb,
                                      audio_a=audio(ra), audio_b=audio(rb)))
        if not items:
            raise ListeningError(f"no sentence was finished by both {sa} and {sb}")
    return _write_test(run_dir, name, kind, list(systems), items, seed, source=f"run {run_dir}")


def create_test_from_lists(run_dir: str | os.PathLike, kind: str, audio: dict[str, Sequence[str]],
                           name: Optional[str] = None, texts: Optional[Sequence[str]] = None,
                           refs: Optional[Sequence[str]] = None, seed: int = 0) -> "ListeningTest":
    """A test over explicit audio lists: ``audio`` maps a system name to its files (for A/B and CMOS exactly two
    systems with lists of equal length, paired by position). ``refs`` (SMOS) gives the reference of position i,
    ``texts`` the sentence shown with it (optional). The test is stored in ``run_dir/listening/<name>``."""
    kind = _check_kind(kind)
    name = _check_name(name or kind, "test name")
    if not audio or not all(isinstance(v, (list, tuple)) for v in audio.values()):
        raise ListeningError("give the audio as {system name: [file, ...]}")
    systems = [_check_name(s, "system name") for s in audio]
    n = max(len(v) for v in audio.values())
    if texts is not None and len(texts) != n:
        raise ListeningError(f"{len(texts)} texts for {n} audio positions")
    if kind == "smos" and (refs is None or len(refs) != n):
        raise ListeningError(f"SMOS needs one reference audio per position ({n}), got {0 if refs is None else len(refs)}")
    items: list[dict] = []
    if kind in ("mos", "smos"):
        for system, files in audio.items():
            for i, f in enumerate(files):
                it = dict(id=str(i), system=system, text=texts[i] if texts else "", audio=str(f))
                if kind == "smos":
                    it["ref"] = str(refs[i])
                items.append(it)
    else:
        if len(systems) != 2:
            raise ListeningError(f"{kind.upper()} compares exactly two systems, got {len(systems)}")
        fa, fb = audio[systems[0]], audio[systems[1]]
        if len(fa) != len(fb):
            raise ListeningError(f"the two systems need lists of equal length (paired by position), got "
                                 f"{len(fa)} and {len(fb)}")
        for i, (a, b) in enumerate(zip(fa, fb)):
            items.append(dict(id=str(i), text=texts[i] if texts else "", system_a=systems[0], system_b=systems[1],
                              audio_a=str(a), audio_b=str(b)))
    return _write_test(Path(run_dir).expanduser(), name, kind, systems, items, seed, source="lists")


def list_tests(run_dir: str | os.PathLike) -> list[str]:
    root = Path(run_dir).expanduser() / "listening"
    return sorted(p.parent.name for p in root.glob("*/test.json")) if root.is_dir() else []


def open_test(run_dir: str | os.PathLike, name: str) -> "ListeningTest":
    tdir = listening_dir(run_dir, name)
    if not (tdir / "test.json").is_file():
        have = list_tests(run_dir)
        raise ListeningError(f"no listening test {name!r} in {run_dir}"
                             + (f" (it has {', '.join(have)})" if have else ""))
    return ListeningTest(tdir)


def open_or_create(run_dir: str | os.PathLike, kind: str, name: Optional[str] = None,
                   systems: Optional[Sequence[str]] = None, **kw) -> "ListeningTest":
    """Open test ``name`` (default: the kind) of a run, creating it from the run's results if it does not exist."""
    kind = _check_kind(kind)
    name = _check_name(name or kind, "test name")
    if (listening_dir(run_dir, name) / "test.json").is_file():
        test = open_test(run_dir, name)
        if test.kind != kind:
            raise ListeningError(f"test {name!r} is a {test.kind.upper()} test, not {kind.upper()}; choose another "
                                 "name for a new test")
        return test
    return create_test_from_run(run_dir, kind, name=name, systems=systems, **kw)


# ----------------------------------------------------------------------------------------------------------------
# rating

def check_rater(rater: str) -> str:
    r = " ".join((rater or "").split())
    if not r:
        raise ListeningError("enter a rater name first (it keeps your answers and your order of items)")
    if len(r) > 64:
        raise ListeningError("the rater name is longer than 64 characters")
    return r


@dataclass
class Trial:
    """One item as a rater sees it: ``left``/``right`` in display order (right is None for MOS/SMOS)."""
    position: int
    total: int
    key: str
    text: str
    left: Path
    right: Optional[Path]
    ref: Optional[Path]
    swapped: bool
    answer: Any  # this rater's current answer in display terms, or None


class ListeningTest:
    def __init__(self, tdir: Path):
        self.dir = Path(tdir)
        try:
            self.spec = json.loads((self.dir / "test.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ListeningError(f"cannot read {self.dir / 'test.json'}: {exc}") from None
        self.kind: str = self.spec["kind"]
        self.name: str = self.spec["name"]
        self.systems: list[str] = self.spec["systems"]
        self.items: list[dict] = self.spec["items"]
        self._index = {it["key"]: it for it in self.items}

    @property
    def answers_path(self) -> Path:
        return self.dir / "answers.jsonl"

    @property
    def paired(self) -> bool:
        return self.kind in ("ab", "cmos")

    def __len__(self) -> int:
        return len(self.items)

    # -- the per-rater order --------------------------------------------------------------------------------------
    def rater_seed(self, rater: str) -> int:
        digest = hashlib.sha256(f"{self.spec['seed']}\x00{self.name}\x00{check_rater(rater)}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def order(self, rater: str) -> list[tuple[str, bool]]:
        """(item key, swapped) in the order this rater hears them; swapped = the second system plays on the left."""
        rng = random.Random(self.rater_seed(rater))
        keys = [it["key"] for it in self.items]
        rng.shuffle(keys)
        return [(k, bool(rng.getrandbits(1)) if self.paired else False) for k in keys]

    def trial(self, rater: str, position: int) -> Trial:
        order = self.order(rater)
        if not 0 <= position < len(order):
            raise ListeningError(f"item {position + 1} is out of range (the test has {len(order)} items)")
        key, swapped = order[position]
        it = self._index[key]
        if self.paired:
            a, b = self.dir / it["audio_a"], self.dir / it["audio_b"]
            left, right = (b, a) if swapped else (a, b)
        else:
            left, right = self.dir / it["audio"], None
        prev = self.rater_answers(rater).get(key)
        return Trial(position=position, total=len(order), key=key, text=it.get("text", ""), left=left, right=right,
                     ref=self.dir / it["ref"] if it.get("ref") else None, swapped=swapped,
                     answer=None if prev is None else prev["answer"])

    # -- answers ----------------------------------------------------------------------------------------------------
    def _check_answer(self, answer: Any) -> Any:
        if self.kind == "ab":
            a = str(answer).strip()
            low = {c.lower(): c for c in AB_CHOICES}
            low.update({"no preference": "tie", "same": "tie"})
            if a.lower() not in low:
                raise ListeningError(f"an A/B answer is one of {', '.join(AB_CHOICES)}, got {answer!r}")
            return low[a.lower()]
        lo, hi = (1, 5) if self.kind in ("mos", "smos") else (-3, 3)
        try:
            f = float(str(answer).strip().split()[0]) if isinstance(answer, str) else float(answer)
        except (TypeError, ValueError, IndexError):
            raise ListeningError(f"a {self.kind.upper()} answer is a whole number from {lo} to {hi}, "
                                 f"got {answer!r}") from None
        if f != int(f) or not lo <= f <= hi:
            raise ListeningError(f"a {self.kind.upper()} answer is a whole number from {lo} to {hi}, got {answer!r}")
        return int(f)

    def _value(self, it: dict, answer: Any, swapped: bool) -> Any:
        """The answer in system terms: MOS/SMOS the score; A/B the preferred system (or 'tie'); CMOS the score of the
        test's second system against its first."""
        if self.kind == "ab":
            if answer == "tie":
                return "tie"
            left_is_a = not swapped
            return it["system_a"] if (answer == "A") == left_is_a else it["system_b"]
        if self.kind == "cmos":
            return -answer if swapped else answer
        return answer

    def answer(self, rater: str, position: int, answer: Any) -> dict:
        """Validate and append one answer (flushed and fsynced before returning)."""
        rater = check_rater(rater)
        value = self._check_answer(answer)
        order = self.order(rater)
        if not 0 <= position < len(order):
            raise ListeningError(f"item {position + 1} is out of range (the test has {len(order)} items)")
        key, swapped = order[position]
        it = self._index[key]
        rec = dict(rater=rater, key=key, position=position, answer=value, swapped=swapped,
                   value=self._value(it, value, swapped), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with _LOCK:
            _repair_tail(self.answers_path)
            with open(self.answers_path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        return rec

    def all_answers(self) -> list[dict]:
        """The counted answers: the last one of each rater for each item (a torn last line is ignored)."""
        if not self.answers_path.is_file():
            return []
        latest: dict[tuple[str, str], dict] = {}
        for line in self.answers_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("key") in self._index:
                latest[(rec["rater"], rec["key"])] = rec
        return list(latest.values())

    def rater_answers(self, rater: str) -> dict[str, dict]:
        rater = check_rater(rater)
        return {r["key"]: r for r in self.all_answers() if r["rater"] == rater}

    def raters(self) -> list[str]:
        return sorted({r["rater"] for r in self.all_answers()})

    def resume_position(self, rater: str) -> int:
        """The first item of this rater's order not answered yet (the last item when all are answered)."""
        done = self.rater_answers(rater)
        for i, (key, _) in enumerate(self.order(rater)):
            if key not in done:
                return i
        return len(self.items) - 1

    def answered(self, rater: str) -> int:
        return len(self.rater_answers(rater))

    # -- results --------------------------------------------------------------------------------------------------
    def results(self, n_boot: int = 2000, seed: int = 0) -> dict:
        from eval.stats import bootstrap_ci

        answers = self.all_answers()
        out: dict[str, Any] = dict(test=self.name, kind=self.kind, systems=self.systems, items=len(self.items),
                                   raters=sorted({a["rater"] for a in answers}), answers=len(answers), rows=[])

        def ci(values):
            if not values:
                return dict(mean=None, ci_lo=None, ci_hi=None)
            c = bootstrap_ci(values, n=n_boot, seed=seed)
            return dict(mean=c.mean, ci_lo=c.lo, ci_hi=c.hi)

        if self.kind in ("mos", "smos"):
            for system in self.systems:
                vals = [float(a["value"]) for a in answers if self._index[a["key"]].get("system") == system]
                out["rows"].append(dict(system=system, metric=self.kind.upper(), n=len(vals), **ci(vals)))
        elif self.kind == "ab":
            sa, sb = self.systems
            values = [a["value"] for a in answers]
            n = len(values)
            for label in (sa, sb, "tie"):
                ind = [1.0 if v == label else 0.0 for v in values]
                row = dict(system=label, metric="preference", n=n, count=int(sum(ind)), **ci(ind))
                out["rows"].append(row)
            # preference of B over A (ties count 0): +1 B preferred, -1 A preferred
            net = [1.0 if v == sb else -1.0 if v == sa else 0.0 for v in values]
            out["rows"].append(dict(system=f"{sb} vs {sa}", metric="net preference", n=n, **ci(net)))
        else:
            sa, sb = self.systems
            vals = [float(a["value"]) for a in answers]
            out["rows"].append(dict(system=f"{sb} vs {sa}", metric="CMOS", n=len(vals), **ci(vals)))
        return out

    def answer_rows(self) -> list[dict]:
        rows = []
        for a in sorted(self.all_answers(), key=lambda r: (r["rater"], r["position"])):
            it = self._index[a["key"]]
            rows.append(dict(rater=a["rater"], item=a["key"], id=it["id"], sample=it.get("sample", ""),
                             system=it.get("system", f"{it.get('system_a')} | {it.get('system_b')}"),
                             position=a["position"], swapped=a["swapped"], answer=a["answer"], value=a["value"],
                             time=a["time"]))
        return rows

    def write_results(self) -> dict:
        """results.json, results.csv (summary rows) and answers.csv (de-randomised answers); returns the results."""
        res = self.results()
        (self.dir / "results.json").write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
        cols = ["system", "metric", "n", "count", "mean", "ci_lo", "ci_hi"]
        _write_csv(self.dir / "results.csv", res["rows"], cols)
        _write_csv(self.dir / "answers.csv", self.answer_rows(),
                   ["rater", "item", "id", "sample", "system", "position", "swapped", "answer", "value", "time"])
        return res


def _repair_tail(path: Path) -> None:
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def results_markdown(res: dict) -> str:
    """A results table as Markdown (the UI shows it)."""
    lines = [f"**{res['test']}** · {KIND_LABELS[res['kind']]} · {res['items']} items · {len(res['raters'])} rater(s)"
             f" · {res['answers']} answers", "", "| system | metric | n | mean | 95% CI |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        ci = "–" if r["ci_lo"] is None else f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]"
        lines.append(f"| {r['system']} | {r['metric']} | {r['n']} | {_fmt(r['mean'])} | {ci} |")
    return "\n".join(lines)


def write_listening_summary(run_dir: str | os.PathLike) -> Optional[Path]:
    """Write results.json/results.csv/answers.csv of every listening test of a run plus ``listening/summary.json``
    and ``listening/index.html`` (relative links, so the run folder can be moved). Returns the HTML path, or None
    when the run has no listening test. eval/report.py links ``listening/index.html``."""
    run_dir = Path(run_dir).expanduser()
    names = list_tests(run_dir)
    if not names:
        return None
    root = run_dir / "listening"
    summary = [open_test(run_dir, n).write_results() for n in names]
    (root / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Listening tests</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
             "<h1>Listening tests</h1>"]
    for res in summary:
        e = html.escape
        parts.append(f"<h2>{e(res['test'])} — {e(KIND_LABELS[res['kind']])}</h2><p>{res['items']} items, "
                     f"{len(res['raters'])} rater(s), {res['answers']} answers · <a href='{e(res['test'])}/results.csv'>"
                     f"results.csv</a> · <a href='{e(res['test'])}/results.json'>results.json</a> · "
                     f"<a href='{e(res['test'])}/answers.csv'>answers.csv</a></p>")
        parts.append("<table><tr><th>system</th><th>metric</th><th>n</th><th>mean</th><th>95% CI</th></tr>")
        for r in res["rows"]:
            ci = "–" if r["ci_lo"] is None else f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]"
            parts.append(f"<tr><td>{e(str(r['system']))}</td><td>{e(r['metric'])}</td><td>{r['n']}</td>"
                         f"<td>{_fmt(r['mean'])}</td><td>{ci}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    out = root / "index.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
