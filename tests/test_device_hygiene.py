"""Device hygiene: library code never creates a tensor on a device it did not take from the model or its input.

On a CPU-only machine a tensor created without ``device=`` lands on the CPU next to CPU models, so the bug only shows
on a GPU. Three checks catch it here:

1. **Static (ast)**: every ``torch.zeros/ones/empty/full/arange/tensor/as_tensor/randn/rand/randint/randperm/
   linspace/logspace/eye/*_window`` call in gsv_core passes ``device=``, unless it is in a module constructor
   (``__init__``: parameters and buffers follow ``.to()`` and the ``torch.device(...)`` context the loaders build
   under) or in :data:`ALLOWED` with the reason it stays on the CPU by design. Random draws with ``generator=`` and
   ``device=`` must take the device from the generator (a CPU generator cannot draw CUDA tensors) unless allowed.
2. **Dynamic (default device = meta)**: the GPT (every decoding variant, batched and single), the SoVITS decoder of
   every version, both training forwards and the feature models run on CPU weights inside ``torch.device("meta")``:
   a factory call without ``device=`` then makes a meta tensor, and the first op mixing it with real data fails.
3. The collective helpers of the trainers put their tensors on the GPU when the process group is NCCL.

What was tried and is not used: ``FakeTensorMode`` with fake ``device="cuda"`` tensors (it has the real CUDA
device rules) crashes on this CPU-only torch build in plain indexing ("PyTorch is not linked with support for cuda
devices") and cannot run the data-dependent decoding loop; meta tensors cannot run it either, hence CPU weights
under a meta *default* device instead.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FACTORIES = {"zeros", "ones", "empty", "full", "arange", "tensor", "as_tensor", "randn", "rand", "randint",
             "randperm", "linspace", "logspace", "eye", "hann_window", "hamming_window", "kaiser_window",
             "blackman_window", "bartlett_window"}
RANDOM = {"randn", "rand", "randint", "randperm", "normal"}

_DATA = "training data: DataLoader collation and samplers build CPU batches; the trainers move them with .to(device)"
_HOST = "host-side input (ids, audio, numpy) wrapped on the CPU and moved to the model's device where it is used"
_TABLE = "a constant table built on the CPU once and moved with .to(device) (cached per device)"
#: (file, function) -> why a device-less factory call there is right. Module constructors are allowed globally.
ALLOWED: dict[tuple[str, str], str] = {
    ("gsv_core/api.py", "speaker_embedding"): _HOST,
    ("gsv_core/engine/pipeline.py", "_prepare"): _HOST + " (prompt phone ids)",
    ("gsv_core/engine/pipeline.py", "_run_s1_mixed"): _HOST + " (phone ids, then .to(registry.device))",
    ("gsv_core/engine/textfeatures.py", "bert_for"): "BERT features are cached on the CPU by contract (bert_for); "
                                                     "the pipeline moves them to the GPT's device",
    ("gsv_core/features/speaker.py", "cosine_similarity"): "as_tensor keeps a tensor's own device; b follows a",
    ("gsv_core/finetune/common.py", "rng_state"): "RNG state saved to the training-state file (CPU by design)",
    ("gsv_core/finetune/features.py", "sinc_resample"): _TABLE + " (the resampling kernel)",
    ("gsv_core/finetune/features.py", "step_semantic"): _HOST + " (HuBERT features batched, then .to(p.device))",
    ("gsv_core/finetune/s1_data.py", "collate"): _DATA,
    ("gsv_core/finetune/s2_data.py", "collate"): _DATA,
    ("gsv_core/finetune/s2_data.py", "__getitem__"): _DATA,
    ("gsv_core/finetune/s2_data.py", "batches"): _DATA + " (sampler order from a CPU generator)",
    ("gsv_core/finetune/s2_lora_train.py", "collate_cfm"): _DATA,
    ("gsv_core/inspect.py", "_s2_summary"): "file inspection on the CPU (an empty placeholder tensor)",
    ("gsv_core/models/vocoder.py", "kaiser_sinc_filter"): "built for register_buffer at construction",
}
#: (file, function) -> why a random draw with generator= and a device not taken from that generator is right
ALLOWED_GENERATOR: dict[tuple[str, str], str] = {
    ("gsv_core/models/s2/flow.py", "forward"): "training posterior sample: the trainer passes no generator "
                                               "(the device's global RNG) or one on the model's device",
    ("gsv_core/engine/cfm_decode.py", "generator_noise"): "v3/v4: its callers pass a generator on `device`",
    ("gsv_core/models/cfm.py", "inference"): "v3/v4: its callers pass a generator on the model's device",
}


def _calls(path: Path, with_scope: bool = False):
    """(function name, call node) of every torch.<factory>(...) call in a file, with the enclosing function (and,
    with ``with_scope``, that function's node)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []

    def visit(node, func, scope):
        for child in ast.iter_child_nodes(node):
            is_def = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            name, inner = (child.name, child) if is_def else (func, scope)
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                    and isinstance(child.func.value, ast.Name) and child.func.value.id == "torch"
                    and child.func.attr in FACTORIES | RANDOM):
                out.append((func, child, scope) if with_scope else (func, child))
            visit(child, name, inner)

    visit(tree, "<module>", tree)
    return out


def _from_generator(device: ast.AST, generator: ast.AST, scope: ast.AST) -> bool:
    """Whether a device expression is the generator's device: ``g.device`` in it, directly or through a local name
    assigned from such an expression in the same function."""
    mark = f"{ast.unparse(generator)}.device"
    if mark in ast.unparse(device):
        return True
    if isinstance(device, ast.Name):
        for node in ast.walk(scope):
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == device.id for t in node.targets)
                    and mark in ast.unparse(node.value)):
                return True
    return False


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / "gsv_core").rglob("*.py")):
        rel = str(path.relative_to(root))
        for func, call, scope in _calls(path, with_scope=True):
            where = f"{rel}:{call.lineno} torch.{call.func.attr} in {func}()"
            device = _keyword(call, "device")
            if call.func.attr in FACTORIES and device is None and func != "__init__" and (rel, func) not in ALLOWED:
                found.append(f"{where}: no device= (derive it from the model or the input)")
            generator = _keyword(call, "generator")
            if call.func.attr in RANDOM and generator is not None and device is not None:
                if not _from_generator(device, generator, scope) and (rel, func) not in ALLOWED_GENERATOR:
                    found.append(f"{where}: device= is not the generator's device")
    return found


def test_no_device_less_tensor_creation_in_gsv_core():
    assert violations() == []


def test_allow_list_entries_still_exist():
    """An entry whose function no longer creates device-less tensors is stale: remove it."""
    used = set()
    for path in sorted((ROOT / "gsv_core").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for func, call in _calls(path):
            if _keyword(call, "device") is None:
                used.add((rel, func))
            if _keyword(call, "generator") is not None:
                used.add((rel, func))
    assert sorted(set(ALLOWED) - used) == [] and sorted(set(ALLOWED_GENERATOR) - used) == []


def test_checker_flags_bad_code(tmp_path):
    bad = tmp_path / "gsv_core" / "models"
    bad.mkdir(parents=True)
    (bad / "bad.py").write_text(
        "import torch\n"
        "class M:\n"
        "    def __init__(self):\n"
        "        self.w = torch.zeros(3)\n"  # allowed: construction
        "    def forward(self, x, g):\n"
        "        a = torch.arange(x.shape[0])\n"  # flagged
        "        b = torch.zeros(3, device=x.device)\n"  # fine
        "        c = torch.randn(3, generator=g, device=x.device)\n"  # flagged: generator's device
        "        d = torch.randn(3, generator=g, device=g.device).to(x.device)\n"  # fine
        "        return a, b, c, d\n", encoding="utf-8")
    found = violations(tmp_path)
    assert len(found) == 2 and "torch.arange" in found[0] and "generator's device" in found[1]


# -- dynamic: CPU weights, meta default device ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixtures(parity_dir):
    return parity_dir


@pytest.mark.parametrize("variant", ["plain", "sliced", "fixed", "int8-dynamic"])
def test_gpt_decoding_creates_nothing_on_the_default_device(fixtures, variant):
    from gsv_core.loading import load_gpt
    from gsv_core.models.s1_static import StaticCacheText2Semantic
    from gsv_core.models.sampling import SamplingParams

    model, _ = load_gpt(fixtures / "s1_v2.ckpt")
    if variant == "int8-dynamic":
        from gsv_core.models.quant import dynamic_int8_supported, quantize_gpt_dynamic_int8

        if not dynamic_int8_supported():
            pytest.skip("no fbgemm int8 kernel in this build")
        quantize_gpt_dynamic_int8(model)
        model = StaticCacheText2Semantic.from_plain(model)
    elif variant != "plain":
        model = StaticCacheText2Semantic.from_plain(model, mode=variant)
    io = np.load(fixtures / "s1_v2_io.npz")
    phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    with torch.device("meta"), torch.inference_mode():
        batched = model.generate([phones, phones[:25]], [bert, bert[:, :25]], prompt, SamplingParams(top_k=3),
                                 early_stop_num=20, generator=gens)
        single = model.generate([phones], [bert], prompt, SamplingParams(top_k=3), early_stop_num=20,
                                parallel=False, generator=[gens[0]])
        free = model.generate([phones], [bert], None, SamplingParams(top_k=3), early_stop_num=15)
    assert all(t.device.type == "cpu" for t in batched + single + free)


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_sovits_decode_and_latents_create_nothing_on_the_default_device(fixtures, version):
    from gsv_core.features.spectrogram import linear_spectrogram
    from gsv_core.loading import load_sovits

    model, _ = load_sovits(fixtures / f"s2_{version}.pth.xz")
    s2 = np.load(fixtures / "s2_inputs.npz")
    text = torch.from_numpy(s2["text_v1" if version == "v1" else "text_v2"])
    text = text if text.dim() == 2 else text[None]
    pro = version in ("v2Pro", "v2ProPlus")
    with torch.device("meta"), torch.inference_mode():
        spec = linear_spectrogram(torch.from_numpy(s2["wav32"])[None])
        codes = model.extract_latent(torch.from_numpy(s2["ssl"]))
        svs = [torch.from_numpy(s2["sv_emb"]), torch.from_numpy(s2["sv_emb_b"])] if pro else None
        audio = model.decode(codes, text, [spec, spec], noise_scale=0.5, speed=1.2, sv_emb=svs,
                             generator=torch.Generator().manual_seed(0))
    assert audio.device.type == "cpu" and torch.isfinite(audio).all()


def test_training_forwards_create_nothing_on_the_default_device(fixtures):
    from gsv_core.finetune.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
    from gsv_core.loading import load_gpt, load_sovits
    from gsv_core.models.s2 import MultiPeriodDiscriminator

    gpt, _ = load_gpt(fixtures / "s1_v2.ckpt")
    gpt.train()
    sovits, _ = load_sovits(fixtures / "s2_v2Pro.pth.xz")
    sovits.train()
    disc = MultiPeriodDiscriminator("v2Pro").train()
    gen = torch.Generator().manual_seed(0)
    phones = torch.randint(1, 700, (2, 12), generator=gen)
    tokens = torch.randint(0, 1000, (2, 9), generator=gen)
    frames = 40
    with torch.device("meta"):
        loss, acc = gpt.forward_train(phones, torch.tensor([12, 8], device="cpu"), tokens,
                                      torch.tensor([9, 6], device="cpu"), torch.zeros(2, 1024, 12, device="cpu"))
        loss.backward()
        spec = torch.rand(2, 1025, frames, generator=gen, device="cpu")
        ssl = torch.rand(2, 768, frames, generator=gen, device="cpu")
        y_hat, _, ids, _, mask, (z, z_p, m_p, logs_p, m_q, logs_q), _ = sovits.forward_train(
            ssl, spec, torch.tensor([frames, 30], device="cpu"), phones, torch.tensor([12, 8], device="cpu"),
            sv_emb=torch.rand(2, 20480, generator=gen, device="cpu"), segment_frames=4)
        real = torch.rand(2, 1, y_hat.shape[-1], generator=gen, device="cpu")
        d_real, d_fake, fmap_r, fmap_g = disc(real, y_hat)
        total = (discriminator_loss(d_real, d_fake)[0] + generator_loss(d_fake)[0] + feature_loss(fmap_r, fmap_g)
                 + kl_loss(z_p, logs_q, m_p, logs_p, mask))
        total.backward()
    assert torch.isfinite(loss) and torch.isfinite(total)


def test_feature_models_create_nothing_on_the_default_device(tiny_assets, fixtures):
    from gsv_core.loading import load_hubert, load_speaker_encoder

    s2 = np.load(fixtures / "s2_inputs.npz")
    wav16 = torch.from_numpy(s2["wav16"]).float()
    hubert = load_hubert(tiny_assets["hubert"], torch.device("cpu"), torch.float32)
    speaker = load_speaker_encoder(tiny_assets["sv"], torch.device("cpu"), torch.float32)
    with torch.device("meta"), torch.inference_mode():
        feats = hubert.prompt_features(wav16, 9600)
        emb = speaker(wav16)
    assert feats.device.type == "cpu" and emb.device.type == "cpu"


def test_collectives_use_the_gpu_under_nccl(monkeypatch):
    from gsv_core.finetune import common

    monkeypatch.setattr(common.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(common.dist, "get_backend", lambda: "gloo")
    assert common._collective_device() == torch.device("cpu")
    monkeypatch.setattr(common.dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(common.torch.cuda, "current_device", lambda: 1)
    assert common._collective_device() == torch.device("cuda", 1)
