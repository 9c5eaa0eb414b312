"""Long jobs spread over several local devices (gsv_core.pool), tested on the CPU with two worker processes
("cpu", "cpu") and the tiny fixture models: the pool returns results in request order with a result or an error
per request, cancels and reports a dead worker; an eval run and a RefAudio sweep give the same results in the same
order as with the single engine, and resume exactly as before."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from config import load_settings
from eval.run import EvalRunner, RunConfig, load_results
from gsv_core.errors import GSVError

REF_TEXT = "你早上好，这是参考声音。"
FAST_ASR = dict(vad_filter=False, beam_size=1, max_new_tokens=4, temperature=0.0, compute_type="int8", device="cpu")
TWO_CPUS = ["cpu", "cpu"]


class _Boom(Exception):
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory, parity_dir, tiny_assets):
    from gsv_core.api import Engine

    tmp = tmp_path_factory.mktemp("multi_device")
    settings = load_settings(environ={"GSV_HOME": str(tmp), "GSV_REFAUDIO_DB": str(tmp / "ra" / "lib.sqlite3"),
                                      "GSV_OUTPUT_DIR": str(tmp / "out"), "GSV_GPT_WEIGHT_DIRS": str(parity_dir),
                                      "GSV_SOVITS_WEIGHT_DIRS": str(parity_dir)}, my_config=tmp / "none.py")
    engine = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp / "tts_log.csv")
    broken = tmp / "broken.wav"
    broken.write_bytes(b"RIFF broken")
    models = dict(gpt_path=str(parity_dir / "s1_v2.ckpt"), sovits_path=str(parity_dir / "s2_v2.pth.xz"))
    return dict(engine=engine, settings=settings, tmp=tmp, broken=broken, models=models, ref=str(tiny_assets["ref"]),
                aux=str(tiny_assets["aux"]))


@pytest.fixture(scope="module")
def pool(env):
    """Two CPU workers shared by the tests (a run may be given an open pool); the last test kills one."""
    with env["engine"].pool(TWO_CPUS) as shared:
        yield shared


def _request(env, text="今天天气很好。", seed=1, ref=None):
    return env["engine"].request(dict(env["models"], text=text, text_lang="zh", ref_audio=ref or env["ref"],
                                      ref_text=REF_TEXT, seed=seed, top_k=5, max_tokens=8))


def _wav(path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


def test_job_devices_spec():
    from gsv_core.api import job_devices

    assert job_devices(None) == [] and job_devices("") == [] and job_devices("default") == []
    assert job_devices("cpu, cpu") == TWO_CPUS and job_devices(TWO_CPUS) == TWO_CPUS
    import torch

    if torch.cuda.device_count() < 2:
        assert job_devices("all") == []  # one GPU or none: the single engine
    for bad, needle in (("cpu", "two or more"), ("cpu,tpu", "use cpu or cuda:N"), ("cpu,cuda:99", "CUDA device")):
        with pytest.raises(GSVError, match=needle):
            job_devices(bad)


def test_pool_order_errors_log_and_cancel(env, pool):
    from gsv_core.api import Cancelled

    engine = env["engine"]
    reqs = [_request(env, seed=1), _request(env, seed=2, ref=str(env["broken"])),
            _request(env, text="我们去公园散步吧！", seed=3)]
    alone = [engine.synthesize(reqs[0]), engine.synthesize(reqs[2])]
    with pytest.raises(GSVError) as single_error:
        engine.synthesize_many(reqs)
    log = env["tmp"] / "tts_log.csv"
    logged = log.read_text(encoding="utf-8").count("\n")
    assert pool.size == 2 and pool.worker_info == [("cpu", "float32")] * 2
    out = pool.synthesize_each(reqs)
    assert isinstance(out[1], GSVError) and "broken" in str(out[1])
    for got, want in zip((out[0], out[2]), alone):  # in request order, the same audio as the single engine
        assert got.seed == want.seed and [f.tokens for f in got.fragments] == [f.tokens for f in want.fragments]
        np.testing.assert_allclose(got.audio, want.audio, atol=1e-3)
    assert log.read_text(encoding="utf-8").count("\n") == logged + 2  # the calling process logs, once each
    with pytest.raises(type(single_error.value)) as pooled_error:  # like one engine: the first failure is raised
        pool.synthesize_many(reqs)
    assert str(pooled_error.value) == str(single_error.value)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        pool.synthesize_many([reqs[0], reqs[2]], cancel=stop)
    again = pool.synthesize_many([reqs[2], reqs[0]])  # still serving after a cancel
    np.testing.assert_allclose(again[1].audio, alone[0].audio, atol=1e-3)


def test_eval_run_on_two_workers_matches_single_engine_and_resumes(env, pool, tiny_assets, monkeypatch):
    from gsv_core.asr import ASRService
    from helpers.tiny_whisper import build_tiny_whisper

    tmp, engine = env["tmp"], env["engine"]
    csv_path = tmp / "tests.csv"
    csv_path.write_text("id,text,lang\ns1,今天天气很好。,zh\ns2,我们去公园散步吧！,zh\ns3,这是一个测试。,zh\n",
                        encoding="utf-8")
    system = dict(name="base", gpt=env["models"]["gpt_path"], sovits=env["models"]["sovits_path"],
                  ref_audio=env["ref"], ref_text=REF_TEXT, max_tokens=8, top_k=5)
    config = RunConfig.from_dict(dict(test_csv=str(csv_path), asr_model=str(build_tiny_whisper(tmp / "whisper")),
                                      asr_language="zh", systems=[system], seed=11, asr=FAST_ASR,
                                      sv_path=str(tiny_assets["sv"]), batch_size=1))
    runner = EvalRunner(engine, ASRService(cpu_threads=2), env["settings"])
    single = load_results(runner.run(config, tmp / "single"))

    spread = tmp / "spread"
    seen: list = []
    real_pool = engine.pool

    def recording(target):
        real = target.synthesize_many
        monkeypatch.setattr(target, "synthesize_many",
                            lambda reqs, **kw: seen.extend(r.id for r in reqs) or real(reqs, **kw))
        return target

    monkeypatch.setattr(engine, "pool", lambda devices: recording(real_pool(devices)))

    def crash_after_first(fraction, message):
        if message.startswith("1/3"):
            raise _Boom("killed")

    with pytest.raises(_Boom):  # the run opens (and closes) its own pool
        runner.run(config, spread, progress=crash_after_first, devices=TWO_CPUS)
    assert len(load_results(spread)) == 1 and seen == ["s1", "s2"]  # one batch per worker
    first = load_results(spread)[0]
    seen.clear()
    messages = []
    runner.run(config, spread, devices=recording(pool), progress=lambda f, m: messages.append(m))  # an open pool
    assert seen == ["s2", "s3"] and "1/3 utterances already done" in messages[0]  # resume: what is not recorded
    spread_rows = load_results(spread)
    assert spread_rows[0] == first
    assert [(r["id"], r["seed"]) for r in spread_rows] == [(r["id"], r["seed"]) for r in single]  # same order
    for a, b in zip(single, spread_rows):
        assert (a["tokens"], a["duration"]) == (b["tokens"], b["duration"])
        np.testing.assert_allclose(_wav(tmp / "single" / a["audio"]), _wav(spread / b["audio"]), atol=1e-3)
    # the devices never enter the fingerprint: the same run folder resumes with or without them
    assert RunConfig.from_dict(dict(config.to_dict(), devices="cpu,cpu")).fingerprint() == config.fingerprint()
    runner.run(config, spread)
    assert len(load_results(spread)) == 3


def test_refaudio_sweep_on_two_workers_matches_single_engine_records_errors_and_resumes(env, pool):
    from refaudio.service import RefAudioService
    from refaudio.sweeps import TaskSpec

    svc = RefAudioService(env["settings"], engine=env["engine"], auto_resume=False, score_after_run=False)
    try:
        role = svc.create_role("multi", "voice")
        good, _ = svc.library.add_clip(role, Path(env["ref"]), REF_TEXT, "zh")
        bad, _ = svc.library.add_clip(role, Path(env["aux"]), REF_TEXT, "zh")
        refs = [good, bad]
        svc.library.clip_path(bad).write_bytes(b"broken")  # an unreadable reference: its items fail alone

        def task() -> int:
            return svc.create_task(TaskSpec(role, "k", "top_k", {**env["models"], "max_tokens": 8},
                                            [("今天天气很好。", "zh")], [1, 5],
                                            ref_clip_ids=refs, samples=1, seed=7))

        one, two = task(), task()
        assert svc.runner().run(one) == {"pending": 0, "running": 0, "done": 2, "failed": 2, "total": 4}
        runner = svc.runner()
        runner.devices, runner.chunk_size = pool, 1  # two items per claim: one per worker
        counts = runner.run(two, cancel=lambda: svc.sweeps.counts(two)["done"] >= 1)
        assert svc.sweeps.task(two)["status"] == "cancelled" and counts["running"] == 0
        assert 0 < counts["done"] + counts["failed"] < counts["total"] and counts["pending"] > 0
        kept = {r["id"]: r["finished_at"] for r in svc.db.all("SELECT * FROM items WHERE task_id = ? AND "
                                                               "status != 'pending'", (two,))}
        counts = runner.run(two)
        assert counts["pending"] == 0 and counts["done"] == 2 and counts["failed"] == 2
        again = svc.db.all("SELECT * FROM items WHERE task_id = ?", (two,))
        assert all(r["finished_at"] == kept[r["id"]] for r in again if r["id"] in kept)  # not redone

        def rows(task_id):
            return svc.db.all("SELECT i.*, c.position AS cp, t.position AS tp, r.position AS rp FROM items i "
                              "JOIN task_cells c ON c.id = i.cell_id JOIN task_texts t ON t.id = i.text_id "
                              "JOIN task_refs r ON r.id = i.ref_id WHERE i.task_id = ? "
                              "ORDER BY c.position, r.position, t.position, i.sample", (task_id,))

        for a, b in zip(rows(one), rows(two), strict=True):
            assert (a["cp"], a["rp"], a["tp"], a["seed"], a["status"]) == (b["cp"], b["rp"], b["tp"], b["seed"],
                                                                           b["status"])
            if a["status"] == "failed":
                assert a["error"] == b["error"] and a["error"]
                continue
            assert a["duration"] == pytest.approx(b["duration"])
            np.testing.assert_allclose(_wav(svc.out_root / a["audio_file"]), _wav(svc.out_root / b["audio_file"]),
                                       atol=1e-3)
    finally:
        svc.close()


def test_settings_and_flags_reach_the_runners(env, tmp_path):
    """JOB_DEVICES is the default of both runners; --devices of python -m eval run and python -m refaudio."""
    from eval.__main__ import _config_from_args, _parser
    from refaudio.__main__ import _settings, build_parser
    from refaudio.service import RefAudioService

    settings = dataclasses.replace(env["settings"], job_devices="cpu,cpu", refaudio_db=tmp_path / "lib.sqlite3",
                                   output_dir=tmp_path / "out")
    svc = RefAudioService(settings, engine=object(), auto_resume=False)
    try:
        assert svc.runner().devices == "cpu,cpu"
    finally:
        svc.close()
    args = build_parser().parse_args(["--devices", "all", "sweep", "run", "1"])
    assert _settings(args).job_devices == "all"
    (tmp_path / "w").mkdir()
    for name in ("g.ckpt", "s.pth"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "t.csv").write_text("id,text\na,好\n", encoding="utf-8")
    config = _config_from_args(_parser().parse_args([
        "run", "--csv", str(tmp_path / "t.csv"), "--asr-model", str(tmp_path / "w"), "--system",
        f"a:{tmp_path / 'g.ckpt'}:{tmp_path / 's.pth'}", "--devices", "cuda:0,cuda:1"]))
    assert config.devices == "cuda:0,cuda:1" and "devices" not in config.fingerprint()


def test_dead_worker_is_a_clear_error_and_closes_the_pool(env, pool):
    """Last (it breaks the shared pool): a worker that dies (killed, out of memory) is a PoolError naming it."""
    from gsv_core.api import PoolError

    pool._workers[1].process.kill()
    pool._workers[1].process.join(10)
    reqs = [_request(env, seed=1), _request(env, seed=2)]
    with pytest.raises(PoolError, match="worker on cpu stopped unexpectedly"):
        pool.synthesize_many(reqs)
    with pytest.raises(PoolError, match="closed"):
        pool.synthesize_many(reqs)
