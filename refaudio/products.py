"""Products: a chosen combination (models, reference, auxiliary references, every parameter) saved as a named
voice preset, exported as a zip with relative paths and imported back.

A product zip holds one folder per product::

    <role>-<product>-<id>/preset.json      our preset (the TTS tab's "load product"; see load_preset)
                          api_v2.json      upstream api_v2: {"tts_infer": {...}, "request": {... /tts body ...}}
                          tts_infer.yaml   upstream's config section (JSON is valid YAML)
                          audio/ref<ext>, audio/aux_<k><ext>
                          models/<files>   only with include_models

All JSON is written with json.dumps; file names come from ids and safe names, never from transcripts.
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional, Sequence

from gsv_core.errors import GSVError
from gsv_core.messages import keyed

from .db import Database, NotFound
from gsv_core.fileio import atomic_path, copy_atomic
from gsv_core.formats import safezip

from .files import safe_name
from .library import LANGUAGES, Library
from .sweeps import PARAM_DEFAULTS, _check_value

PRESET_FORMAT = "gsv-playground-preset"
PRESET_VERSION = 1
PRODUCT_PARAMS = (*PARAM_DEFAULTS, "seed", "text_lang")


class ProductError(GSVError):
    """A product that cannot be saved, exported or imported as given."""


def _params(params: dict) -> dict:
    out = {}
    for k, v in (params or {}).items():
        if k in ("gpt_path", "sovits_path", "aux_refs"):
            continue
        if k not in PRODUCT_PARAMS:
            raise ProductError(f"Unknown product parameter {k!r}; known: {', '.join(PRODUCT_PARAMS)}.")
        if k == "seed":
            out[k] = int(v)
        elif k == "text_lang":
            if v not in LANGUAGES:
                raise ProductError(f"text_lang {v!r} is not supported; use one of {', '.join(LANGUAGES)}.")
            out[k] = v
        else:
            out[k] = _check_value(k, v)
    return {**{k: v for k, v in PARAM_DEFAULTS.items()}, "seed": -1, "text_lang": "zh", **out}


class Products:
    def __init__(self, db: Database, library: Library, max_unzip_bytes: int = safezip.DEFAULT_MAX_BYTES,
                 model_allowed: Optional[Callable[[Path], bool]] = None):
        """``model_allowed(path)``: the app's model-folder rule (weights.check_model_path); a product may only
        name, import or export model files it accepts (or files inside the library)."""
        self.db = db
        self.library = library
        self.max_unzip_bytes = max_unzip_bytes
        self._model_allowed = model_allowed

    def model_allowed(self, path: Any) -> bool:
        p = Path(str(path or ""))
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return False
        if not real.is_file():
            return False
        if real.is_relative_to(self.library.root.resolve()):
            return True
        return bool(self._model_allowed(real)) if self._model_allowed is not None else True

    def save(self, role_id: int, name: str, gpt_path: str, sovits_path: str, ref_clip_id: int,
             aux_clip_ids: Sequence[int] = (), params: Optional[dict] = None, category: str = "", remark: str = "",
             score: Optional[float] = None, source_item_id: Optional[int] = None, overwrite: bool = False,
             keep_models: tuple = ()) -> int:
        """``keep_models``: model paths the product already names (an edit that keeps them does not re-check them
        against today's model folders)."""
        self.library.role(role_id)
        name = str(name or "").strip()
        if not name or len(name) > 200:
            raise ProductError("Give the product a name (at most 200 characters).")
        gpt, sovits = _check_value("gpt_path", gpt_path), _check_value("sovits_path", sovits_path)
        for what, path in (("GPT", gpt), ("SoVITS", sovits)):
            if path not in keep_models and not self.model_allowed(path):
                raise ProductError(f"The {what} weights {Path(path).name!r} are not in the model folders.")
        ref = self.library.clip(ref_clip_id)
        aux = [int(self.library.clip(c)["id"]) for c in aux_clip_ids]
        for clip in [ref] + [self.library.clip(c) for c in aux]:
            if clip["role_id"] != int(role_id):
                raise ProductError(f"Clip {clip['id']} belongs to another role.")
        values = (gpt, sovits, ref["id"], json.dumps(aux), json.dumps(_params(params or {})), category, remark,
                  score, source_item_id)
        with self.db.transaction() as conn:
            existing = conn.execute("SELECT id FROM products WHERE role_id = ? AND name = ?",
                                    (int(role_id), name)).fetchone()
            if existing and not overwrite:
                raise ProductError(f"A product named {name!r} exists already; choose another name or overwrite.")
            if existing:
                conn.execute("UPDATE products SET gpt_path = ?, sovits_path = ?, ref_clip_id = ?, aux_clip_ids = ?, "
                             "params = ?, category = ?, remark = ?, score = ?, source_item_id = ? WHERE id = ?",
                             (*values, existing[0]))
                return int(existing[0])
            return int(conn.execute(
                "INSERT INTO products (gpt_path, sovits_path, ref_clip_id, aux_clip_ids, params, category, remark, "
                "score, source_item_id, role_id, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, int(role_id), name)).lastrowid)

    def from_result(self, results: Any, item_id: int, name: str, text_lang: Optional[str] = None,
                    remark: str = "", overwrite: bool = False) -> int:
        """Save the settings of one result (its cell, reference, auxiliaries and seed) as a product."""
        item = results.item(item_id)
        if item["clip_id"] is None:
            raise ProductError(f"The reference clip of result {item_id} was deleted.")
        p = item["params"]
        task = results.sweeps.task(item["task_id"])
        params = {k: p[k] for k in PARAM_DEFAULTS if k in p}
        params.update(seed=int(item["seed"]), text_lang=text_lang or item["text_lang"])
        return self.save(task["role_id"], name, p["gpt_path"], p["sovits_path"], item["clip_id"],
                         p.get("aux_refs", []), params, remark=remark, score=item["user_score"],
                         source_item_id=item["id"], overwrite=overwrite)

    def product(self, product_id: int) -> dict:
        row = self.db.one("SELECT p.*, r.category AS role_category, r.name AS role_name FROM products p "
                          "JOIN roles r ON r.id = p.role_id WHERE p.id = ?", (int(product_id),))
        if row is None:
            raise NotFound(f"There is no product with id {product_id}.")
        row["params"] = json.loads(row["params"])
        row["aux_clip_ids"] = json.loads(row["aux_clip_ids"])
        return row

    def products(self, role_id: Optional[int] = None, search: str = "") -> list[dict]:
        sql = ("SELECT p.id FROM products p JOIN roles r ON r.id = p.role_id WHERE "
               "(instr(lower(p.name), lower(?)) > 0 OR instr(lower(p.category), lower(?)) > 0)")
        params: list[Any] = [search, search]
        if role_id is not None:
            sql += " AND p.role_id = ?"
            params.append(int(role_id))
        return [self.product(r["id"]) for r in self.db.all(sql + " ORDER BY r.category, r.name, p.name", params)]

    EDITABLE = ("name", "category", "remark", "score", "params", "ref_clip_id", "aux_clip_ids", "gpt_path",
                "sovits_path")

    def update(self, product_id: int, **fields: Any) -> dict:
        """Edit a product: name, category, remark, score (empty: none), params (merged into the saved ones and
        checked like a new product's), ref_clip_id / aux_clip_ids (clips of its role), gpt_path / sovits_path
        (inside the model folders). Model files the product imported and no longer names are removed."""
        unknown = set(fields) - set(self.EDITABLE)
        if unknown:
            raise ProductError(f"Cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(self.EDITABLE)}.")
        p = self.product(product_id)
        name = p["name"] if fields.get("name") is None else str(fields["name"]).strip()
        if not name:
            raise keyed(ProductError, "library.name_empty")
        params = dict(p["params"])
        if fields.get("params") is not None:
            if not isinstance(fields["params"], dict):
                raise ProductError("params must be a mapping of parameter -> value.")
            params.update(fields["params"])
        score = p["score"] if "score" not in fields else fields["score"]
        if score in ("",):
            score = None
        if score is not None:
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise ProductError(f"The score must be a number, not {score!r}.") from None
        old_models = {p["gpt_path"], p["sovits_path"]}
        if name != p["name"] and self.db.one("SELECT id FROM products WHERE role_id = ? AND name = ? AND id <> ?",
                                             (p["role_id"], name, p["id"])):
            raise keyed(ProductError, "library.name_taken", name=name)

        def pick(key):
            return p[key] if fields.get(key) is None else fields[key]

        with self.db.transaction() as conn:
            # save() checks everything (models, clips of the role, parameters) and overwrites in place
            conn.execute("UPDATE products SET name = ? WHERE id = ?", (name, p["id"]))
            self.save(p["role_id"], name, pick("gpt_path"), pick("sovits_path"), int(pick("ref_clip_id")),
                      [int(c) for c in pick("aux_clip_ids")], params, category=str(pick("category") or ""),
                      remark=str(pick("remark") or ""), score=score, source_item_id=p["source_item_id"],
                      overwrite=True, keep_models=(p["gpt_path"], p["sovits_path"]))
        self._drop_unused_models(old_models)
        return self.product(p["id"])

    def delete(self, product_id: int) -> None:
        """Delete a product; model files it imported into the library that no other product names go with it
        (its reference clips stay: they are library clips)."""
        p = self.product(product_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM products WHERE id = ?", (int(product_id),))
        self._drop_unused_models({p["gpt_path"], p["sovits_path"]})

    def _drop_unused_models(self, paths: set) -> list[Path]:
        """Remove model files inside the library (copied in by a product import) that no product names now."""
        root = self.library.root.resolve()
        used = {r["gpt_path"] for r in self.db.all("SELECT gpt_path FROM products")}
        used |= {r["sovits_path"] for r in self.db.all("SELECT sovits_path FROM products")}
        for r in self.db.all("SELECT gpt_path, sovits_path FROM task_cells"):  # a sweep may compare them
            used |= {r["gpt_path"], r["sovits_path"]}
        dropped = []
        for raw in paths:
            if not raw or raw in used:
                continue
            path = Path(raw)
            try:
                real = path.resolve()
            except (OSError, RuntimeError):
                continue
            if real.is_relative_to(root) and real.is_file() and not path.is_symlink():
                real.unlink()
                dropped.append(real)
        return dropped

    # -- export ------------------------------------------------------------------------------------------------

    def documents(self, product_id: int, include_models: bool = False) -> tuple[dict, dict, list[tuple[Path, str]]]:
        """(preset, api_v2 document, [(source file, path inside the product folder)])."""
        p = self.product(product_id)
        ref = self.library.clip(p["ref_clip_id"])
        files = [(self.library.clip_path(ref), f"audio/ref{Path(ref['file']).suffix}")]
        aux_docs = []
        for k, clip_id in enumerate(p["aux_clip_ids"], 1):
            clip = self.library.clip(clip_id)
            arc = f"audio/aux_{k}{Path(clip['file']).suffix}"
            files.append((self.library.clip_path(clip), arc))
            aux_docs.append({"audio": arc, "text": clip["transcript"], "language": clip["language"]})
        models = {}
        for key in ("gpt", "sovits"):
            src = Path(p[f"{key}_path"])
            arc = f"models/{safe_name(src.name, key)}"
            if include_models:
                if not self.model_allowed(src):
                    raise ProductError(f"The {key} weights {src.name!r} are not in the model folders (or are gone); "
                                       "cannot include them in the export.")
                files.append((src, arc))
            models[key] = {"file": arc if include_models else None, "name": src.name, "source_path": str(src)}
        version = _model_version(p["sovits_path"])
        params = p["params"]
        preset = {
            "format": PRESET_FORMAT, "format_version": PRESET_VERSION, "name": p["name"],
            "category": p["category"], "remark": p["remark"], "score": p["score"],
            "role": {"category": p["role_category"], "name": p["role_name"]}, "version": version,
            "models": models,
            "reference": {"audio": files[0][1], "text": ref["transcript"], "language": ref["language"],
                          "duration": ref["duration"]},
            "aux_refs": aux_docs, "params": params,
        }
        model_path = {k: (models[k]["file"] or models[k]["source_path"]) for k in models}
        api = {
            "tts_infer": {"custom": {"version": version, "t2s_weights_path": model_path["gpt"],
                                     "vits_weights_path": model_path["sovits"]}},
            "request": {
                "text": "", "text_lang": params["text_lang"], "ref_audio_path": files[0][1],
                "aux_ref_audio_paths": [a["audio"] for a in aux_docs], "prompt_text": ref["transcript"],
                "prompt_lang": ref["language"], "top_k": params["top_k"], "top_p": params["top_p"],
                "temperature": params["temperature"], "text_split_method": params["split_method"],
                "batch_size": params["batch_size"], "speed_factor": params["speed"],
                "fragment_interval": params["pause"], "seed": params["seed"], "parallel_infer": True,
                "repetition_penalty": params["repetition_penalty"], "media_type": "wav", "streaming_mode": False,
            },
        }
        if version in ("v3", "v4"):  # upstream api_v2's v3/v4 fields (None here = the version's default steps)
            from gsv_core.versions import VERSIONS

            api["request"]["sample_steps"] = params.get("sample_steps") or VERSIONS[version].default_sample_steps
            api["request"]["super_sampling"] = bool(params.get("super_sampling")) and version == "v3"
        return preset, api, files

    def export(self, product_ids: Sequence[int], dest: Path, include_models: bool = False) -> Path:
        ids = [int(i) for i in product_ids]
        if not ids:
            raise ProductError("Choose at least one product to export.")
        dest = Path(dest)
        with atomic_path(dest, fsync=False) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for pid in ids:
                    preset, api, files = self.documents(pid, include_models)
                    folder = f"{safe_name(preset['role']['name'], 'role')}-{safe_name(preset['name'], 'product')}-{pid}"
                    z.writestr(f"{folder}/preset.json", json.dumps(preset, ensure_ascii=False, indent=2))
                    z.writestr(f"{folder}/api_v2.json", json.dumps(api, ensure_ascii=False, indent=2))
                    z.writestr(f"{folder}/tts_infer.yaml", json.dumps(api["tts_infer"], ensure_ascii=False, indent=2))
                    for src, arc in files:
                        z.write(src, f"{folder}/{arc}")
        return dest

    # -- import ------------------------------------------------------------------------------------------------

    def import_zip(self, zip_path: Path, role_id: Optional[int] = None, overwrite: bool = False) -> list[int]:
        """Import every product of an exported zip: its audio becomes clips of the role (the preset's role, created
        when missing, unless ``role_id`` is given), its models are copied into the library when included."""
        zip_path = Path(zip_path)
        made = []
        with tempfile.TemporaryDirectory(dir=self.library.root) as tmp:
            try:
                infos = safezip.check_archive(zip_path, max_bytes=self.max_unzip_bytes)
                presets = [i.filename for i in infos if PurePosixPath(i.filename).name == "preset.json"]
                if not presets:
                    raise ProductError(f"{zip_path.name} has no preset.json; export products with this tool first.")
                safezip.extract(zip_path, Path(tmp) / "zip", max_bytes=self.max_unzip_bytes)
            except safezip.ZipError as exc:
                raise ProductError(str(exc)) from None
            for entry in presets:
                made.append(self._import_one(Path(tmp) / "zip" / entry, role_id, overwrite))
        return made

    def _import_one(self, preset_file: Path, role_id: Optional[int], overwrite: bool) -> int:
        try:
            preset = json.loads(preset_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProductError(f"{preset_file.parent.name}/preset.json is not valid JSON: {exc}") from None
        if preset.get("format") != PRESET_FORMAT:
            raise ProductError(f"{preset_file.parent.name}/preset.json is not a {PRESET_FORMAT} file.")
        folder = preset_file.parent
        if role_id is None:
            role = preset.get("role") or {}
            role_id = self.library.create_role(role.get("category") or "imported", role.get("name") or "imported")
        models = {}
        for key in ("gpt", "sovits"):
            m = preset["models"][key]
            if m.get("file"):
                src = _inside(folder, m["file"])
                # named by content: two products whose model files share a name never use each other's weights
                digest = _file_digest(src)
                target = self.library.role_dir(role_id) / "models" / f"{digest}_{safe_name(Path(m['file']).name, key)}"
                if not target.exists():
                    copy_atomic(src, target)
                models[key] = str(target)
            elif m.get("source_path") and self.model_allowed(m["source_path"]):
                models[key] = str(Path(m["source_path"]).resolve())
            else:
                raise ProductError(f"Product {preset.get('name')!r}: the {key} weights {m.get('name')!r} are not in the "
                                   "zip and not in this app's model folders; export the product with its models.")
        ref = preset["reference"]
        ref_id, _ = self.library.add_clip(role_id, _inside(folder, ref["audio"]), str(ref.get("text", "")),
                                          ref.get("language", "zh"), category="products")
        aux_ids = [self.library.add_clip(role_id, _inside(folder, a["audio"]), str(a.get("text", "")),
                                         a.get("language", "zh"), category="products")[0]
                   for a in preset.get("aux_refs", [])]
        return self.save(role_id, preset["name"], models["gpt"], models["sovits"], ref_id, aux_ids,
                         preset.get("params") or {}, category=preset.get("category", ""),
                         remark=preset.get("remark", ""), score=preset.get("score"), overwrite=overwrite)


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _inside(folder: Path, rel: str) -> Path:
    pp = PurePosixPath(str(rel))
    if pp.is_absolute() or ".." in pp.parts:
        raise ProductError(f"Unsafe path {rel!r} in a preset.")
    path = (folder / pp).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ProductError(f"The preset names {rel!r}, which is not in its folder.")
    return path


def _model_version(sovits_path: str) -> str:
    try:
        from gsv_core.inspect import describe

        return str(describe(Path(sovits_path)).get("version", ""))
    except Exception:  # noqa: BLE001 - the version is informative only
        return ""


def load_preset(path: Any, model_allowed: Optional[Callable[[Path], bool]] = None) -> dict:
    """A preset (``preset.json``, its folder, or a product zip's extracted folder) as TTS request values with
    absolute paths: text_lang, ref_audio, ref_text, ref_lang, aux_refs, gpt_path, sovits_path and every parameter.
    ``pages/tts.py`` passes them to ``Services.make_request``."""
    p = Path(str(path))
    if p.is_dir():
        p = p / "preset.json"
    if not p.is_file():
        raise ProductError(f"{p} not found; choose a product's preset.json.")
    try:
        preset = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProductError(f"{p} is not valid JSON: {exc}") from None
    if preset.get("format") != PRESET_FORMAT:
        raise ProductError(f"{p} is not a {PRESET_FORMAT} file.")
    folder = p.parent
    out = dict(preset.get("params") or {})
    for key in ("gpt", "sovits"):
        m = preset["models"][key]
        if m.get("file"):
            model = _inside(folder, m["file"])
        else:  # a path on the machine that exported it: usable only inside this app's model folders
            model = Path(m.get("source_path") or "")
            if model_allowed is not None and not model_allowed(model):
                raise ProductError(f"The {key} weights of {preset.get('name')!r} ({m.get('name')!r}) are not in the "
                                   "zip and not in this app's model folders; export the product with its models.")
        if not model.is_file():
            raise ProductError(f"The {key} weights of {preset.get('name')!r} ({m.get('name')}) are missing.")
        out[f"{key}_path"] = str(model)
    out["ref_audio"] = str(_inside(folder, preset["reference"]["audio"]))
    out["ref_text"] = preset["reference"].get("text", "")
    out["ref_lang"] = preset["reference"].get("language", "zh")
    out["aux_refs"] = [str(_inside(folder, a["audio"])) for a in preset.get("aux_refs", [])]
    out["name"] = preset.get("name", "")
    return out


def product_to_request_values(products: Products, product_id: int) -> dict:
    """The same mapping as :func:`load_preset`, straight from the library (no export needed)."""
    p = products.product(product_id)
    ref = products.library.clip(p["ref_clip_id"])
    out = dict(p["params"])
    out.update(gpt_path=p["gpt_path"], sovits_path=p["sovits_path"],
               ref_audio=str(products.library.clip_path(ref)), ref_text=ref["transcript"], ref_lang=ref["language"],
               aux_refs=[str(products.library.clip_path(c)) for c in p["aux_clip_ids"]], name=p["name"])
    return out
