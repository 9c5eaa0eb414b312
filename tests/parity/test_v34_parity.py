"""Parity of the SoVITS v3 / v4 path (SynthesizerTrnV3, CFM/DiT, BigVGAN, v4 vocoder, TTS.py's decode paths) with
upstream GPT-SoVITS, on the golden set in ``GSV_PARITY_V34_DIR`` (default ``<repo>/../shared/fixtures/gsv_parity_v34``).

Everything is discovered from the files: the versions from ``<v>_meta.json`` + ``<v>_components.npz``, the
whole-path cases from the meta's ``cases`` (kind, reference, targets, speed, steps, model) and their ``.npz``, the
chunk count from the ``chunk<i>_noise`` arrays, the merged LoRA tensors from the ``merged_*`` arrays. Tolerances are
the README's (section 7). Each stage is fed the recorded inputs of that stage.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gsv_core.engine import cfm_decode as cd
from gsv_core.features.spectrogram import linear_spectrogram
from gsv_core.loading import load_sovits, load_vocoder
from gsv_core.models.cfm import text_positions

REPO = Path(__file__).resolve().parents[2]

TOL = {
    "spec": (1e-3, 1e-4),  # (atol, rtol)
    "mel": (2e-3, 0),
    "encp": (1e-4, 0),
    "cfm": (5e-5, 0),
    "vocoder": (2e-5, 0),
    "chunk": (5e-5, 0),
    "vocoder_in": (5e-4, 0),
    "audio": (5e-5, 0),
}


def v34_dir() -> Path:
    raw = os.environ.get("GSV_PARITY_V34_DIR")
    return Path(raw).expanduser().resolve() if raw else (REPO / ".." / "shared" / "fixtures" / "gsv_parity_v34").resolve()


@pytest.fixture(scope="module")
def fx() -> Path:
    d = v34_dir()
    if not (d / "README.md").is_file():
        pytest.fail(f"v3/v4 parity fixture folder not found: {d} (set GSV_PARITY_V34_DIR)")
    return d


def _versions(d: Path) -> list[str]:
    found = sorted(f.name.split("_")[0] for f in d.glob("v*_meta.json") if (d / f"{f.name.split('_')[0]}_components.npz").is_file())
    assert found, f"no <version>_meta.json + <version>_components.npz in {d}"
    return found


def _weights_index(d: Path) -> dict:
    return json.loads((d / "weights_index.json").read_text())


def _file(d: Path, index: dict, key: str) -> Path:
    return d / index[key]["file"]


def _vocoder_path(d: Path, index: dict, version: str) -> Path:
    if version == "v3":
        return (d / index["bigvgan"]["file"]).parent
    return d / index["v4_vocoder"]["file"]


@pytest.fixture(scope="module")
def sets(fx):
    """version -> dict(meta, comp, base, lora, vocoder, files)."""
    index = _weights_index(fx)
    out = {}
    for v in _versions(fx):
        base_path = _file(fx, index, f"{v}_base")
        lora_path = _file(fx, index, f"{v}_lora")
        base, base_info = load_sovits(base_path)
        lora, lora_info = load_sovits(lora_path, base_path=base_path)
        out[v] = {
            "meta": json.loads((fx / f"{v}_meta.json").read_text()),
            "comp": np.load(fx / f"{v}_components.npz"),
            "base": base, "base_info": base_info, "lora": lora, "lora_info": lora_info,
            "vocoder": load_vocoder(v, _vocoder_path(fx, index, v)),
            "base_path": base_path, "lora_path": lora_path,
        }
    return out


@pytest.fixture(scope="module")
def inputs(fx):
    return np.load(fx / "v34_inputs.npz"), np.load(fx / "v34_refer_spec.npz")


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _close(actual, expected: np.ndarray, what: str, tol: str):
    a = actual.detach().float().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert a.shape == expected.shape, f"{what}: shape {a.shape} != expected {expected.shape}"
    atol, rtol = TOL[tol]
    np.testing.assert_allclose(a, expected, atol=atol, rtol=rtol, err_msg=what)


def _ref_keys(inp) -> list[str]:
    return sorted({m.group(1) for k in inp.files if (m := re.match(r"ref_(\w+?)_prompt_semantic$", k))})


def _rate_key(version: str) -> str:
    return "wav24" if cd.SPECS[version].mel_rate == 24000 else "wav32"


# ----------------------------------------------------------------------------------------------------------------
# loading


def test_loaders_match_upstream(sets):
    for v, s in sets.items():
        assert s["base_info"].version == v and s["lora_info"].version == v and s["lora_info"].lora_rank > 0
        shapes = s["meta"]["base_checkpoint"]["weight_shapes"]
        sd = s["base"].state_dict()
        assert set(sd) == set(shapes), f"{v}: key sets differ: {set(sd) ^ set(shapes)}"
        for key, shape in shapes.items():
            assert list(sd[key].shape) == shape, f"{v}: {key}"
        assert "All keys matched" in s["meta"]["tts_load_base"]["load_log"][0]


def test_lora_merge(sets):
    for v, s in sets.items():
        comp, sd = s["comp"], s["lora"].state_dict()
        merged = [k for k in comp.files if k.startswith("merged_")]
        assert merged, f"{v}: no merged_* arrays"
        for key in merged:
            np.testing.assert_array_equal(sd[key[len("merged_"):]].numpy(), comp[key], err_msg=f"{v} {key}")
        # the LoRA file's own tensors (ref_enc, bridge, wns1, ...) replaced the base's
        lora_shapes = s["meta"]["lora_checkpoint"]["weight_shapes"]
        plain = [k for k in lora_shapes if ".lora_" not in k and k.startswith("wns1.")]
        base_sd = s["base"].state_dict()
        assert plain and any(not torch.equal(sd[k], base_sd[k]) for k in plain), f"{v}: LoRA wns1 not applied"


# ----------------------------------------------------------------------------------------------------------------
# features


def test_reference_mels_and_spectrograms(sets, inputs):
    inp, specs = inputs
    for v, s in sets.items():
        comp = s["comp"]
        for r in _ref_keys(inp):
            if f"mel_{r}_raw" not in comp.files:
                continue
            raw = cd.reference_mel(_t(inp[f"ref_{r}_{_rate_key(v)}"]), v)
            _close(raw, comp[f"mel_{r}_raw"], f"{v} mel_{r}_raw", "mel")
            _close(cd.norm_spec(raw), comp[f"mel_{r}_norm"], f"{v} mel_{r}_norm", "mel")
            _close(cd.denorm_spec(cd.norm_spec(raw)), comp[f"mel_{r}_raw"], f"{v} denorm", "mel")
    for r in _ref_keys(inp):
        spec = linear_spectrogram(_t(inp[f"ref_{r}_wav32"])[None])
        _close(spec, specs[f"refer_spec_{r}"], f"refer_spec_{r}", "spec")


def test_decode_encp(sets, inputs):
    inp, specs = inputs
    for v, s in sets.items():
        m, comp, meta = s["base"], s["comp"], s["meta"]
        ref = next(r for r in _ref_keys(inp)
                   if comp["encp_prompt_enc_p_x"].shape[-1] == 2 * len(inp[f"ref_{r}_prompt_semantic"]))
        cap = {}
        codes = _t(inp[f"ref_{ref}_prompt_semantic"])[None, None]
        ge = m.timbre(_t(specs[f"refer_spec_{ref}"]))
        _close(ge, comp["encp_ge"], f"{v} ge", "encp")
        fea = m.encode(codes, _t(inp[f"ref_{ref}_prompt_phones"])[None], ge, capture=cap)
        _close(fea, comp["encp_prompt_fea"], f"{v} prompt fea", "encp")
        _close(cap["enc_p_x"], comp["encp_prompt_enc_p_x"], f"{v} enc_p x", "encp")
        _close(cap["bridge"], comp["encp_prompt_bridge"], f"{v} bridge", "encp")
        fea2, ge2 = m.decode_encp(codes, _t(inp[f"ref_{ref}_prompt_phones"])[None], _t(specs[f"refer_spec_{ref}"]))
        torch.testing.assert_close(fea2, fea, rtol=0, atol=0)
        # the target of the encp arrays: the one whose 2N matches the recorded encoder length (tgt_speed here)
        targets = sorted(k[: -len("_codes")] for k in inp.files if k.endswith("_codes"))
        tgt = next(t for t in sorted(targets, key=lambda t: t != "tgt_speed")
                   if 2 * len(inp[f"{t}_codes"]) == comp["encp_tgt_speed1_enc_p_x"].shape[-1])
        n = len(inp[f"{tgt}_codes"])
        speed_x = float(meta["components"]["decode_encp"]["speedX"])
        for tag, speed in (("speed1", 1.0), ("speedX", speed_x)):
            cap = {}
            out = m.encode(_t(inp[f"{tgt}_codes"])[None, None], _t(inp[f"{tgt}_phones"])[None], _t(comp["encp_ge"]),
                           speed, capture=cap)
            _close(out, comp[f"encp_tgt_{tag}_fea"], f"{v} target fea {tag}", "encp")
            _close(cap["enc_p_x"], comp[f"encp_tgt_{tag}_enc_p_x"], f"{v} target enc_p {tag}", "encp")
            if speed != 1:
                assert cap["enc_p_x"].shape[-1] == int(2 * n / speed) + 1
        # the nearest resampling source indices
        for name, length in (("prompt", comp["encp_prompt_bridge"].shape[-1]),
                             ("tgt_speedX", comp["encp_tgt_speedX_enc_p_x"].shape[-1])):
            idx = torch.arange(length, dtype=torch.float32)[None, None]
            got = torch.nn.functional.interpolate(idx, scale_factor=m.fea_scale, mode="nearest")[0, 0].long()
            np.testing.assert_array_equal(got.numpy(), comp[f"nearest_map_{name}"], err_msg=f"{v} {name}")


# ----------------------------------------------------------------------------------------------------------------
# CFM / DiT


def test_dit_intermediates(sets):
    for v, s in sets.items():
        est, comp = s["base"].cfm.estimator, s["comp"]
        _close(est.rotary_embed.inv_freq, comp["dit_rotary_inv_freq_loaded"], f"{v} inv_freq", "cfm")
        t_len = comp["cfm_mu"].shape[1]
        _close(est.rotary_embed(t_len), comp["dit_rope_freqs"], f"{v} rope", "cfm")
        n_steps = comp["cfm_steps4_t"].shape[0]
        with torch.no_grad():
            t_emb = est.time_embed(_t(comp["cfm_steps4_t"][:1]))
            d_emb = est.d_embed(torch.full((1,), 1.0 / n_steps))
            _close(t_emb, comp["dit_step0_time_embed"], f"{v} time_embed", "cfm")
            _close(d_emb, comp["dit_step0_d_embed"], f"{v} d_embed", "cfm")
            text = est.text_embed(_t(comp["cfm_mu"]))
            _close(text, comp["dit_step0_text_embed"], f"{v} text_embed", "cfm")
            x = _t(comp["cfm_steps4_x_in"][:1]).transpose(1, 2)
            tp = comp["cfm_prompt"].shape[-1]
            cond = torch.zeros_like(x)
            cond[:, :tp] = _t(comp["cfm_prompt"]).transpose(1, 2)
            h = est.input_embed(x, cond, text)
            _close(h, comp["dit_step0_input_embed"], f"{v} input_embed", "cfm")
            rope = est.rotary_embed.cos_sin(t_len, torch.float32)
            for i, block in enumerate(est.transformer_blocks):
                h = block(h, t_emb + d_emb, rope)
                if f"dit_step0_block{i}" in comp.files:
                    _close(h, comp[f"dit_step0_block{i}"], f"{v} block {i}", "cfm")
            _close(est.norm_out(h, t_emb + d_emb), comp["dit_step0_norm_out"], f"{v} norm_out", "cfm")


def test_cfm_sampling(sets):
    for v, s in sets.items():
        comp, cfm = s["comp"], s["base"].cfm
        mu, prompt, noise = _t(comp["cfm_mu"]), _t(comp["cfm_prompt"]), _t(comp["cfm_noise"])
        seen = []
        steps_keys = sorted(int(m.group(1)) for k in comp.files if (m := re.match(r"cfm_steps(\d+)_out$", k)))
        assert steps_keys
        for n in steps_keys:
            seen.clear()
            out = cfm.inference(mu, prompt, n, noise=noise, on_step=lambda j, x, t, vel: seen.append((x, t, vel)))
            _close(out, comp[f"cfm_steps{n}_out"], f"{v} cfm {n} steps", "cfm")
            assert not out[..., : prompt.size(-1)].any()
            if f"cfm_steps{n}_x_in" in comp.files:
                for j, (x, t, vel) in enumerate(seen):
                    _close(x[0], comp[f"cfm_steps{n}_x_in"][j], f"{v} x_in step {j}", "cfm")
                    _close(t[0], comp[f"cfm_steps{n}_t"][j], f"{v} t step {j}", "cfm")
                    _close(vel[0], comp[f"cfm_steps{n}_v"][j], f"{v} v step {j}", "cfm")


def test_cfm_batch_padding_is_invisible(sets):
    """Items of different lengths and prompt lengths in one CFM batch give what each gives alone."""
    v, s = next(iter(sets.items()))
    comp, cfm = s["comp"], s["base"].cfm
    mu, prompt, noise = _t(comp["cfm_mu"]), _t(comp["cfm_prompt"]), _t(comp["cfm_noise"])
    t_full, tp = mu.size(1), prompt.size(-1)
    t_short, tp_short = t_full - 37, tp - 11
    alone_a = cfm.inference(mu, prompt, 2, noise=noise)
    alone_b = cfm.inference(mu[:, :t_short], prompt[..., :tp_short], 2, noise=noise[..., :t_short])
    batch_mu = torch.cat([mu, torch.nn.functional.pad(mu[:, :t_short], (0, 0, 0, t_full - t_short))])
    batch_noise = torch.cat([noise, torch.nn.functional.pad(noise[..., :t_short], (0, t_full - t_short))])
    both = cfm.inference(batch_mu, torch.cat([prompt, prompt]), 2, x_lens=[t_full, t_short],
                         prompt_lens=[tp, tp_short], noise=batch_noise)
    torch.testing.assert_close(both[0], alone_a[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(both[1, :, :t_short], alone_b[0], atol=2e-5, rtol=0)


def test_text_positions_cap():
    pos = text_positions(4100, 8, "cpu", torch.float32)
    torch.testing.assert_close(pos[4095:], pos[4095:4096].expand(5, -1))


# ----------------------------------------------------------------------------------------------------------------
# vocoders


def test_vocoder_fixed_mel(sets):
    for v, s in sets.items():
        comp = s["comp"]
        frames = comp["vocoder_fixed_out"].shape[-1] // cd.SPECS[v].upsample
        with torch.inference_mode():
            out = s["vocoder"](_t(comp["mel_short_raw"][:, :, :frames]))
        _close(out, comp["vocoder_fixed_out"], f"{v} vocoder", "vocoder")


# ----------------------------------------------------------------------------------------------------------------
# whole paths


def _cases(sets):
    return [(v, c) for v, s in sets.items() for c in s["meta"]["cases"]]


def _reference(s, version, case, inp, specs):
    """(model, CFMReference) of a case."""
    model = s["lora"] if case["model"] == "lora" else s["base"]
    r = case["ref"]
    return model, cd.prepare_reference(
        model, _t(inp[f"ref_{r}_prompt_semantic"])[None, None], _t(inp[f"ref_{r}_prompt_phones"])[None],
        _t(specs[f"refer_spec_{r}"]), _t(inp[f"ref_{r}_{_rate_key(version)}"]))


def test_whole_path_cases(sets, inputs, fx):
    inp, specs = inputs
    cases = _cases(sets)
    assert any(c["kind"] == "single" for _, c in cases) and any(c["kind"] == "batched" for _, c in cases)
    for v, case in cases:
        s = sets[v]
        exp = np.load(fx / case["file"])
        model, ref = _reference(s, v, case, inp, specs)
        what = f"{v} {case['name']}"
        _close(ref.fea_full, exp["fea_ref"], f"{what} fea_ref", "encp")
        _close(ref.ge, exp["ge"], f"{what} ge", "encp")
        _close(ref.mel, exp["chunk0_prompt"], f"{what} prompt mel", "mel")
        frags = [(_t(inp[f"{t}_codes"])[None, None], _t(inp[f"{t}_phones"])[None]) for t in case["tgt"]]
        if case["kind"] == "single":
            fea = cd.encode_fragment(model, ref, *frags[0], case["speed"])
            _close(fea, exp["fea_todo"], f"{what} fea_todo", "encp")
            noises = iter([_t(exp[k]) for k in sorted(exp.files, key=_chunk_no) if k.endswith("_noise")])
            calls = []
            mels = cd.sample_mels(model, ref, [fea], case["steps"], [lambda shape: next(noises)], on_call=calls.append)
            n_chunks = sum(1 for k in exp.files if re.match(r"chunk\d+_out$", k))
            assert len(calls) == n_chunks == case.get("n_cfm_calls", n_chunks), what
            for j, call in enumerate(calls):
                expected = case["cfm_calls"][j]
                assert call["x_lens"] == [expected["T"]] and call["prompt_lens"] == [expected["prompt_len"]], what
                _close(call["out"], exp[f"chunk{j}_out"], f"{what} chunk {j}", "chunk")
            _close(cd.denorm_spec(mels[0]), exp["vocoder_in"], f"{what} vocoder_in", "vocoder_in")
            _close(cd.vocode(s["vocoder"], mels[0]), exp["audio0"], f"{what} audio", "audio")
        else:
            cap = {}
            outs = cd.decode_parallel_sola(model, s["vocoder"], ref, frags, case["steps"], case["speed"],
                                           noise=lambda shape: _t(exp["chunk0_noise"]), capture=cap)
            for i, fea in enumerate(cap["feas"]):
                _close(fea, exp[f"fea_todo{i}"], f"{what} fea_todo{i}", "encp")
            _close(cap["mu"], exp["chunk0_mu"], f"{what} mu", "encp")
            _close(cap["out"], exp["chunk0_out"], f"{what} cfm", "chunk")
            _close(cap["vocoder_in"], exp["vocoder_in"], f"{what} vocoder_in", "vocoder_in")
            assert cap["seg_idx"] == list(case["seg_idx"]), f"{what}: SOLA lags {cap['seg_idx']} != {case['seg_idx']}"
            assert len(outs) == len(case["tgt"])
            for i, audio in enumerate(outs):
                _close(audio, exp[f"audio{i}"], f"{what} audio {i}", "audio")


def _chunk_no(key: str) -> int:
    m = re.match(r"chunk(\d+)_", key)
    return int(m.group(1)) if m else -1


def test_batched_fragments_equal_alone(sets, inputs):
    """decode_fragments: CFM calls batched across fragments (different lengths, different chunk counts) give each
    fragment the audio it gets alone, with the same per-fragment noise."""
    inp, specs = inputs
    v, s = next(iter(sets.items()))
    longest = max(_ref_keys(inp), key=lambda r: len(inp[f"ref_{r}_prompt_semantic"]))  # shortest chunks
    case = {"model": "base", "ref": longest}
    model, ref = _reference(s, v, case, inp, specs)
    tgts = sorted({k[: -len("_codes")] for k in inp.files if k.endswith("_codes")})
    n_long = int(ref.chunk_len / model.frames_per_token) + 20  # long enough for two chunks
    frags = [(_t(np.resize(inp[f"{t}_codes"], n))[None, None], _t(inp[f"{t}_phones"])[None])
             for t, n in zip(tgts[:3], (40, n_long, 25))]
    noises = lambda: [cd.generator_noise(torch.Generator().manual_seed(7 + i), "cpu", torch.float32)  # noqa: E731
                      for i in range(len(frags))]
    feas = [cd.encode_fragment(model, ref, c, p) for c, p in frags]
    together = cd.sample_mels(model, ref, feas, 2, noises())
    alone = [cd.sample_mels(model, ref, [f], 2, [n])[0] for f, n in zip(feas, noises())]
    assert max(f.shape[-1] for f in feas) > ref.chunk_len  # one fragment needs two chunks
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=0)
    assert [m.shape[-1] for m in together] == [f.shape[-1] for f in feas]
