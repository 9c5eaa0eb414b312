"""python -m refaudio: the reference workbench without the UI.

    python -m refaudio roles [--create CATEGORY NAME]
    python -m refaudio import --role CATEGORY/NAME LIST [--category C] [--update]
    python -m refaudio clips --role CATEGORY/NAME [--category C] [--sort duration] [--asc]
    python -m refaudio sweep create --role R --compare top_k --values '[5,15,30]' --base '{"gpt_path":..., ...}'
                                    --refs 1,2 --text "..." [--text ...] [--samples 2] [--run]
    python -m refaudio sweep run TASK_ID
    python -m refaudio results TASK_ID [--sort duration] [--asc] [--limit 50] [--json]
    python -m refaudio score TASK_ID --auto | --item ID --score 0-5 [--remark TEXT]
    python -m refaudio product save --item ID --name NAME | product list [--role R]
    python -m refaudio export PRODUCT_ID[,ID...] [--out FILE.zip] [--models]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from gsv_core.errors import GSVError


def _settings(args):
    from config import load_settings

    s = load_settings()
    changes = {}
    if args.db:
        changes["refaudio_db"] = Path(args.db).resolve()
    if args.output_dir:
        changes["output_dir"] = Path(args.output_dir).resolve()
    for name in ("bert_dir", "hubert_dir", "sv_path"):
        if getattr(args, name):
            changes[name] = Path(getattr(args, name)).resolve()
    if args.device:
        changes["device"] = args.device
    return dataclasses.replace(s, **changes) if changes else s


def _service(args, need_engine: bool = False):
    from .service import RefAudioService

    settings = _settings(args)
    factory = None
    if need_engine:
        def factory():
            from gsv_core.api import Engine

            return Engine.open(settings)
    asr = None
    if not args.no_asr:
        from gsv_core.asr import ASRService

        asr = ASRService.from_settings(settings)
    return RefAudioService(settings, engine_factory=factory, asr_service=asr, auto_resume=False,
                           sv_path=settings.sv_path)


def _role(service, text: str) -> int:
    if text.isdigit():
        return int(service.library.role(int(text))["id"])
    if "/" not in text:
        raise GSVError(f"Give the role as CATEGORY/NAME or its id, not {text!r}.")
    category, name = text.split("/", 1)
    row = service.library.find_role(category, name)
    if row is None:
        raise GSVError(f"There is no role {text!r}; create it with `python -m refaudio roles --create {category} "
                       f"{name}`.")
    return int(row["id"])


def _ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GSVError(f"Expected comma-separated ids, not {text!r}.") from None


def _json(text: Optional[str], what: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GSVError(f"--{what} is not valid JSON: {exc}") from None


class _Bar:
    """tqdm over progress(fraction, message)."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=desc, file=sys.stderr, leave=False)

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(1000 * max(0.0, min(1.0, fraction)))
        self.bar.set_postfix_str(message[:60])
        self.bar.refresh()

    def close(self):
        self.bar.close()


def _print_rows(rows, columns, as_json=False):
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
        return
    print("\t".join(columns))
    for r in rows:
        print("\t".join("" if r.get(c) is None else (f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
                        for c in columns))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refaudio", description="Reference-audio workbench (library, "
                                "parameter sweeps, scoring, products).")
    p.add_argument("--db", help="library database (default: REFAUDIO_DB from the settings)")
    p.add_argument("--output-dir", help="output folder (default: OUTPUT_DIR); results go to <it>/refaudio")
    p.add_argument("--bert-dir")
    p.add_argument("--hubert-dir")
    p.add_argument("--sv-path")
    p.add_argument("--device")
    p.add_argument("--no-asr", action="store_true", help="skip ASR (CER) when measuring results")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("roles", help="list roles, or create one")
    r.add_argument("--create", nargs=2, metavar=("CATEGORY", "NAME"))

    i = sub.add_parser("import", help="import a GPT-SoVITS .list into a role")
    i.add_argument("--role", required=True, help="CATEGORY/NAME or id (created when --create-role)")
    i.add_argument("--create-role", action="store_true")
    i.add_argument("list")
    i.add_argument("--category", default="default")
    i.add_argument("--update", action="store_true", help="update transcripts of clips already present")

    c = sub.add_parser("clips", help="list a role's clips")
    c.add_argument("--role", required=True)
    c.add_argument("--category", action="append", default=[])
    c.add_argument("--sort", default="duration")
    c.add_argument("--asc", action="store_true")
    c.add_argument("--json", action="store_true")

    s = sub.add_parser("sweep", help="create or run a comparison task")
    ssub = s.add_subparsers(dest="action", required=True)
    sc = ssub.add_parser("create")
    sc.add_argument("--role", required=True)
    sc.add_argument("--name", default="")
    sc.add_argument("--compare", required=True)
    sc.add_argument("--values", help="JSON: list for one variable, dict for kpt/full, [[gpt, sovits], ...]")
    sc.add_argument("--base", default="{}", help="JSON base settings (gpt_path, sovits_path, top_k, ...)")
    sc.add_argument("--refs", default="", help="reference clip ids, comma-separated")
    sc.add_argument("--ref-category", action="append", default=[])
    sc.add_argument("--text", action="append", required=True)
    sc.add_argument("--lang", default="zh")
    sc.add_argument("--samples", type=int, default=1)
    sc.add_argument("--seed", type=int)
    sc.add_argument("--run", action="store_true", help="run it now")
    sr = ssub.add_parser("run")
    sr.add_argument("task", type=int)

    rs = sub.add_parser("results", help="list a task's results")
    rs.add_argument("task", type=int)
    rs.add_argument("--sort", default="duration")
    rs.add_argument("--asc", action="store_true")
    rs.add_argument("--limit", type=int, default=100)
    rs.add_argument("--status", default="done")
    rs.add_argument("--json", action="store_true")

    sc2 = sub.add_parser("score", help="measure a task's results (--auto) or give one a 0-5 score")
    sc2.add_argument("task", type=int)
    sc2.add_argument("--auto", action="store_true")
    sc2.add_argument("--item", type=int)
    sc2.add_argument("--score", type=int)
    sc2.add_argument("--remark")

    pr = sub.add_parser("product", help="save or list products")
    psub = pr.add_subparsers(dest="action", required=True)
    ps = psub.add_parser("save")
    ps.add_argument("--item", type=int, required=True)
    ps.add_argument("--name", required=True)
    ps.add_argument("--overwrite", action="store_true")
    pl = psub.add_parser("list")
    pl.add_argument("--role")
    pi = psub.add_parser("import")
    pi.add_argument("zip")

    e = sub.add_parser("export", help="export products as a zip")
    e.add_argument("products")
    e.add_argument("--out")
    e.add_argument("--models", action="store_true", help="include the model files")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    service = None
    try:
        need_engine = (args.command == "sweep") or (args.command == "score" and args.auto)
        service = _service(args, need_engine)
        cmd = args.command
        if cmd == "roles":
            if args.create:
                print(service.create_role(*args.create))
            _print_rows(service.list_roles(), ["id", "category", "name", "clips", "tasks"])
        elif cmd == "import":
            if args.create_role and "/" in args.role:
                role_id = service.create_role(*args.role.split("/", 1))
            else:
                role_id = _role(service, args.role)
            bar = _Bar("import")
            report = service.import_list(role_id, args.list, args.category,
                                         on_duplicate="update" if args.update else "skip", progress=bar)
            bar.close()
            print(report.summary())
            for issue in report.errors:
                print(f"  line {issue.line}: {issue.reason}", file=sys.stderr)
            return 0 if report.added or report.updated or report.duplicates else 1
        elif cmd == "clips":
            rows = service.list_clips(_role(service, args.role), categories=args.category, sort=args.sort,
                                      descending=not args.asc, limit=10000)
            _print_rows(rows, ["id", "category", "name", "duration", "valid", "language", "transcript"], args.json)
        elif cmd == "sweep":
            from .sweeps import TaskSpec

            if args.action == "create":
                spec = TaskSpec(role_id=_role(service, args.role), name=args.name, compare=args.compare,
                                base=_json(args.base, "base") or {}, values=_json(args.values, "values"),
                                texts=[(t, args.lang) for t in args.text], ref_clip_ids=_ids(args.refs),
                                ref_categories=args.ref_category, samples=args.samples, seed=args.seed)
                task_id = service.create_task(spec)
                print(f"task {task_id}: {service.sweeps.counts(task_id)['total']} item(s)")
            else:
                task_id = args.task
            if args.action == "run" or args.run:
                bar = _Bar(f"task {task_id}")
                counts = service.run_task_now(task_id, progress=bar)
                bar.close()
                print(f"task {task_id}: {counts['done']} done, {counts['failed']} failed, "
                      f"{counts['pending']} pending")
                return 0 if counts["failed"] == 0 and counts["pending"] == 0 else 1
        elif cmd == "results":
            rows = service.list_results(args.task, status=args.status or None, sort=args.sort,
                                        descending=not args.asc, limit=args.limit)
            _print_rows(rows, ["id", "cell_label", "ref_name", "sample", "seed", "duration", "cer", "sim_ref",
                               "duration_z", "user_score", "flags", "audio_file"], args.json)
        elif cmd == "score":
            if args.auto:
                print(json.dumps(service.score_task(args.task), ensure_ascii=False))
            elif args.item is not None:
                if service.result(args.item)["task_id"] != args.task:
                    raise GSVError(f"Result {args.item} is not part of task {args.task}.")
                row = service.set_score(args.item, args.score, args.remark)
                print(f"result {row['id']}: score {row['user_score']}, remark {row['remark']!r}")
            else:
                raise GSVError("Give --auto, or --item with --score and/or --remark.")
        elif cmd == "product":
            if args.action == "save":
                print(service.product_from_result(args.item, args.name, overwrite=args.overwrite))
            elif args.action == "import":
                print(service.import_products(args.zip))
            else:
                role_id = _role(service, args.role) if args.role else None
                _print_rows(service.list_products(role_id), ["id", "role_category", "role_name", "name", "score"])
        elif cmd == "export":
            path = service.export_products(_ids(args.products), include_models=args.models,
                                           dest=Path(args.out) if args.out else None)
            print(path)
        return 0
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if service is not None:
            service.close()


if __name__ == "__main__":
    sys.exit(main())
