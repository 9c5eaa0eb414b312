"""python -m refaudio: the reference workbench without the UI.

    python -m refaudio roles [--create CATEGORY NAME]
    python -m refaudio import --role CATEGORY/NAME LIST [--category C] [--update]
    python -m refaudio clips --role CATEGORY/NAME [--category C] [--sort duration] [--asc]
    python -m refaudio sweep create --role R --compare top_k --values '[5,15,30]' --base '{"gpt_path":..., ...}'
                                    --refs 1,2 --text "..." [--text ...] [--samples 2] [--run]
    python -m refaudio sweep run TASK_ID
    python -m refaudio --devices all sweep run TASK_ID          (one engine per local GPU; resume is unchanged)
    python -m refaudio results TASK_ID [--sort duration] [--asc] [--limit 50] [--json]
    python -m refaudio score TASK_ID --auto | --item ID --score 0-5 [--remark TEXT]
    python -m refaudio product save --item ID --name NAME | product list [--role R]
    python -m refaudio export PRODUCT_ID[,ID...] [--out FILE.zip] [--models]

Management (every delete asks for confirmation unless --yes):

    python -m refaudio clip delete ID[,ID...] [--yes]          (refused while a product or task uses a clip)
    python -m refaudio role export ROLE [--folder] [--category C] [--valid] [--out PATH]
    python -m refaudio role delete ROLE [--force] [--yes]      (--force: a role with clips/tasks/products)
    python -m refaudio task list [--role R] | rename ID NAME | note ID TEXT | delete ID [--yes]
    python -m refaudio product edit ID [--name N] [--category C] [--remark R] [--score S] [--params JSON]
                                       [--ref CLIP] [--aux IDS] | product delete ID [--yes]
    python -m refaudio texts list [--search S] [--lang L] [--tag T] | add NAME TEXT [--lang L] [--tags a,b]
                             [--note N] | edit NAME_OR_ID [--name] [--text] [--lang] [--tags] [--note]
                             | delete NAME_OR_ID [--yes]
    python -m refaudio sweep create ... --library-text NAME     (a library text with its own language)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from gsv_core.cli import ProgressBar
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
    if args.devices is not None:
        changes["job_devices"] = args.devices
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
    p.add_argument("--devices", help="sweeps: spread the synthesis over local devices, one engine process each: all "
                                     "(every GPU when there are two or more), cuda:0,cuda:1, or default (one engine; "
                                     "default: the JOB_DEVICES setting)")
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
    sc.add_argument("--text", action="append", default=[], help="a test text (repeatable; or --library-text)")
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
    _management_parsers(sub, ssub, psub)
    return p


def _yes(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--yes", "-y", action="store_true", help="delete without asking")


def _management_parsers(sub, sweep_sub, product_sub) -> None:
    """Library management: clips, roles, tasks, products, the test-text library (deletes ask unless --yes)."""
    sweep_sub.choices["create"].add_argument(
        "--library-text", action="append", default=[], metavar="NAME_OR_ID",
        help="a test text from the library (`texts list`), with its own language; repeatable")

    c = sub.add_parser("clip", help="delete clips")
    csub = c.add_subparsers(dest="action", required=True)
    cd = csub.add_parser("delete", help="delete clips with their audio (refused while a product or task uses one)")
    cd.add_argument("clips", help="clip ids, comma-separated")
    _yes(cd)

    r = sub.add_parser("role", help="export or delete a role")
    rsub = r.add_subparsers(dest="action", required=True)
    re_ = rsub.add_parser("export", help="the role's clips as an upstream .list + audio (zip, or --folder)")
    re_.add_argument("role", help="CATEGORY/NAME or id")
    re_.add_argument("--folder", action="store_true", help="a folder instead of a zip")
    re_.add_argument("--category", action="append", default=[])
    re_.add_argument("--valid", action="store_true", help="only clips of 3-10 s")
    re_.add_argument("--out", help="target zip or folder (default: <output>/refaudio/exports/...)")
    rd = rsub.add_parser("delete", help="delete a role (one that holds clips, tasks or products needs --force)")
    rd.add_argument("role")
    rd.add_argument("--force", action="store_true", help="also delete its clips, tasks, results and products")
    _yes(rd)

    t = sub.add_parser("task", help="list, rename, annotate or delete sweep tasks")
    tsub = t.add_subparsers(dest="action", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--role")
    tl.add_argument("--json", action="store_true")
    tr = tsub.add_parser("rename")
    tr.add_argument("task", type=int)
    tr.add_argument("name")
    tn = tsub.add_parser("note", help="set the task's note (its conclusion)")
    tn.add_argument("task", type=int)
    tn.add_argument("note")
    td = tsub.add_parser("delete", help="delete a task, its results and their audio")
    td.add_argument("task", type=int)
    _yes(td)

    pe = product_sub.add_parser("edit", help="edit a product's name, category, remark, score, params, clips")
    pe.add_argument("product", type=int)
    pe.add_argument("--name")
    pe.add_argument("--category")
    pe.add_argument("--remark")
    pe.add_argument("--score", help="a number, or '' for none")
    pe.add_argument("--params", help='JSON merged into the saved parameters, e.g. \'{"top_k": 10}\'')
    pe.add_argument("--ref", type=int, help="reference clip id (of the product's role)")
    pe.add_argument("--aux", help="auxiliary clip ids, comma-separated ('' for none)")
    pd = product_sub.add_parser("delete")
    pd.add_argument("product", type=int)
    _yes(pd)

    x = sub.add_parser("texts", help="the shared library of test texts")
    xsub = x.add_subparsers(dest="action", required=True)
    xl = xsub.add_parser("list")
    xl.add_argument("--search", default="")
    xl.add_argument("--lang", default="")
    xl.add_argument("--tag", default="")
    xl.add_argument("--json", action="store_true")
    xa = xsub.add_parser("add")
    xa.add_argument("name")
    xa.add_argument("text")
    xa.add_argument("--lang", default="zh")
    xa.add_argument("--tags", default="")
    xa.add_argument("--note", default="")
    xe = xsub.add_parser("edit")
    xe.add_argument("text_ref", metavar="NAME_OR_ID")
    xe.add_argument("--name")
    xe.add_argument("--text")
    xe.add_argument("--lang")
    xe.add_argument("--tags")
    xe.add_argument("--note")
    xd = xsub.add_parser("delete")
    xd.add_argument("text_ref", metavar="NAME_OR_ID")
    _yes(xd)


def _sweep_texts(service, args) -> list[tuple[str, str]]:
    texts = [(t, args.lang) for t in args.text] + service.text_pairs(args.library_text)
    if not texts:
        raise GSVError("Give at least one test text: --text TEXT or --library-text NAME.")
    return texts


def _confirm(args, what: str) -> bool:
    """--yes, or an interactive y/N answer (no terminal: not confirmed, the service refuses)."""
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        return False
    return input(f"Delete {what}? [y/N] ").strip().lower() in ("y", "yes")


def _manage(service, args) -> Optional[int]:
    """The management commands; None when ``args`` is not one of them."""
    cmd, action = args.command, getattr(args, "action", None)
    if cmd == "clip":
        ids = _ids(args.clips)
        out = service.delete_clips(ids, confirm=_confirm(args, f"clip(s) {', '.join(map(str, ids))}"))
        if out["deleted"]:
            print(f"deleted clip(s) {', '.join(map(str, out['deleted']))}")
        for cid, exc in out["refused"].items():
            print(f"error: {exc}", file=sys.stderr)
        return 0 if not out["refused"] else 2
    if cmd == "role":
        role_id = _role(service, args.role)
        if action == "export":
            print(service.export_role(role_id, as_zip=not args.folder, categories=args.category,
                                      valid_only=args.valid, dest=Path(args.out).resolve() if args.out else None))
        else:
            role = service.library.role(role_id)
            out = service.delete_role(role_id, confirm=_confirm(args, f"role {role['category']}/{role['name']}"),
                                      force=args.force)
            print(f"deleted role {out['role']} ({out['clips']} clip(s), {out['tasks']} task(s), "
                  f"{out['products']} product(s))")
        return 0
    if cmd == "task":
        if action == "list":
            role_id = _role(service, args.role) if args.role else None
            _print_rows(service.list_tasks(role_id), ["id", "role_id", "name", "compare_type", "status", "done",
                                                      "failed", "total", "conclusion"], args.json)
        elif action == "rename":
            print(f"task {args.task}: {service.rename_task(args.task, args.name)['name']}")
        elif action == "note":
            service.annotate_task(args.task, args.note)
            print(f"task {args.task}: note saved")
        else:
            task = service.sweeps.task(args.task)
            service.delete_task(args.task, confirm=_confirm(args, f"task {task['id']} ({task['name']})"))
            print(f"deleted task {args.task}")
        return 0
    if cmd == "product" and action in ("edit", "delete"):
        if action == "delete":
            p = service.products.product(args.product)
            service.delete_product(args.product, confirm=_confirm(args, f"product {p['name']}"))
            print(f"deleted product {args.product}")
            return 0
        fields = {k: getattr(args, k) for k in ("name", "category", "remark", "score") if getattr(args, k) is not None}
        if args.params is not None:
            fields["params"] = _json(args.params, "params")
        if args.ref is not None:
            fields["ref_clip_id"] = args.ref
        if args.aux is not None:
            fields["aux_clip_ids"] = _ids(args.aux)
        p = service.update_product(args.product, **fields)
        print(json.dumps({k: p[k] for k in ("id", "name", "category", "remark", "score", "ref_clip_id",
                                            "aux_clip_ids", "params")}, ensure_ascii=False))
        return 0
    if cmd == "texts":
        if action == "list":
            _print_rows(service.list_texts(args.search, args.lang, args.tag),
                        ["id", "name", "language", "tags", "text", "note"], args.json)
        elif action == "add":
            print(service.add_text(args.name, args.text, args.lang, args.tags, args.note))
        elif action == "edit":
            row = service.texts.find(args.text_ref)
            fields = {k: getattr(args, a) for k, a in (("name", "name"), ("text", "text"), ("language", "lang"),
                                                         ("tags", "tags"), ("note", "note"))
                      if getattr(args, a) is not None}
            row = service.update_text(row["id"], **fields)
            print(f"text {row['id']} ({row['name']}) saved")
        else:
            row = service.texts.find(args.text_ref)
            service.delete_text(row["id"], confirm=_confirm(args, f"test text {row['name']}"))
            print(f"deleted test text {row['name']}")
        return 0
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    service = None
    try:
        need_engine = (args.command == "sweep") or (args.command == "score" and args.auto)
        service = _service(args, need_engine)
        cmd = args.command
        managed = _manage(service, args)
        if managed is not None:
            return managed
        if cmd == "roles":
            if args.create:
                print(service.create_role(*args.create))
            _print_rows(service.list_roles(), ["id", "category", "name", "clips", "tasks"])
        elif cmd == "import":
            if args.create_role and "/" in args.role:
                role_id = service.create_role(*args.role.split("/", 1))
            else:
                role_id = _role(service, args.role)
            bar = ProgressBar("import")
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
                                texts=_sweep_texts(service, args), ref_clip_ids=_ids(args.refs),
                                ref_categories=args.ref_category, samples=args.samples, seed=args.seed)
                task_id = service.create_task(spec)
                print(f"task {task_id}: {service.sweeps.counts(task_id)['total']} item(s)")
            else:
                task_id = args.task
            if args.action == "run" or args.run:
                bar = ProgressBar(f"task {task_id}")
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
        from .service import ConfirmationRequired

        if isinstance(exc, ConfirmationRequired):
            print(f"error: not deleted: {exc.params['what']} (answer y, or pass --yes)", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if service is not None:
            service.close()


if __name__ == "__main__":
    sys.exit(main())
