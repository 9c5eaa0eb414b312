"""Speaker-similarity scorers (eval/similarity.py): ERes2NetV2 segment (default) / forward3, WavLM x-vector."""
import json

import numpy as np
import pytest

from eval.audio_metrics import embedding_similarity, speaker_embedding, speaker_similarity
from eval.similarity import (DEFAULT_SIMILARITY_MODEL, SIMILARITY_MODELS, WAVLM_SV_HELP, EmbeddingCache,
                             ERes2NetScorer, SimilarityError, WavLMSVScorer, load_scorer)
from gsv_core.errors import AudioError, GSVError


@pytest.fixture(scope="module")
def encoder(tiny_assets):
    from gsv_core.loading import load_speaker_encoder

    return load_speaker_encoder(tiny_assets["sv"])


@pytest.fixture(scope="module")
def audio(tiny_assets):
    from gsv_core.audio import load_audio

    ref, sr = load_audio(tiny_assets["ref"])
    aux, sr_aux = load_audio(tiny_assets["aux"])
    return ref[:sr // 2], sr, aux[:sr_aux // 2], sr_aux  # half a second each keeps the tests quick


def test_default_is_the_verification_embedding(encoder, audio):
    ref, sr, aux, sr_aux = audio
    assert DEFAULT_SIMILARITY_MODEL == "eres2netv2" and set(SIMILARITY_MODELS) == {
        "eres2netv2", "eres2netv2-forward3", "wavlm-sv"}
    seg = load_scorer(encoder=encoder)
    f3 = load_scorer("eres2netv2-forward3", encoder=encoder)
    assert seg.name == "eres2netv2" and f3.name == "eres2netv2-forward3"
    e_seg, e_f3 = seg.embed(ref, sr), f3.embed(ref, sr)
    assert e_seg.shape == (encoder.model.seg_1.out_features,) == (192,)
    assert e_f3.shape == (20480,)                      # the tiny model keeps the official forward3 size
    assert seg.similarity(ref, sr, ref.copy(), sr) == pytest.approx(1.0, abs=1e-5)
    s_seg, s_f3 = seg.similarity(ref, sr, aux, sr_aux), f3.similarity(ref, sr, aux, sr_aux)
    assert -1.0 <= s_seg <= 1.0 and s_seg != pytest.approx(s_f3, abs=1e-6)  # really different vectors
    assert seg.similarity_to(e_seg, aux, sr_aux) == pytest.approx(s_seg, abs=1e-6)
    assert seg.describe()["similarity_model"] == "eres2netv2"


def test_legacy_functions_keep_forward3_and_accept_kind(encoder, audio):
    ref, sr, aux, sr_aux = audio
    f3_ref, f3_aux = speaker_embedding(encoder, ref, sr), speaker_embedding(encoder, aux, sr_aux)
    assert f3_ref.shape == (20480,)
    seg_ref = speaker_embedding(encoder, ref, sr, kind="segment")
    assert seg_ref.shape == (192,)
    assert seg_ref.numpy() == pytest.approx(encoder.segment_embedding(_16k(ref, sr))[0].numpy(), abs=1e-5)
    assert speaker_similarity(encoder, ref, sr, aux, sr_aux) == pytest.approx(
        embedding_similarity(f3_ref, f3_aux), abs=1e-6)
    with pytest.raises(GSVError, match="unknown"):
        encoder.embed(_16k(ref, sr)[:1600], "mean")


def _16k(wav, sr):
    import torch

    from gsv_core.audio import resample

    return torch.from_numpy(np.ascontiguousarray(resample(wav, sr, 16000)))


def test_windowed_embedding_and_cache(encoder, audio, tmp_path):
    ref, sr, _, _ = audio
    scorer = ERes2NetScorer(encoder)
    scorer.window_s = 0.4                                 # long-audio path: unit embeddings averaged
    e = scorer.embed(ref, sr)
    assert e.shape == (192,) and np.isfinite(e.numpy()).all()
    cache = EmbeddingCache(ERes2NetScorer(encoder))
    a = cache.get("ref", ref, sr)
    assert cache.get("ref", np.zeros(10), sr) is a and len(cache) == 1   # computed once
    import soundfile as sf

    sf.write(tmp_path / "r.wav", ref, sr)
    assert cache.get_file(tmp_path / "r.wav").shape == (192,) and len(cache) == 2
    with pytest.raises(AudioError, match="at least 0.1 s"):
        scorer.embed(ref[:100], sr)


def test_unknown_and_missing_models(encoder, tmp_path):
    with pytest.raises(SimilarityError, match="unknown similarity model"):
        load_scorer("titanet", encoder=encoder)
    with pytest.raises(SimilarityError, match="sv_path"):
        load_scorer("eres2netv2")
    with pytest.raises(SimilarityError, match="wavlm-base-plus-sv") as err:
        load_scorer("wavlm-sv")
    assert "WavLM-large + ECAPA-TDNN" in str(err.value) and isinstance(err.value, GSVError)
    with pytest.raises(SimilarityError, match="config.json missing"):
        WavLMSVScorer(tmp_path / "nothing")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(SimilarityError, match="not WavLMForXVector"):
        WavLMSVScorer(tmp_path / "bert")
    assert "microsoft/wavlm-base-plus-sv" in WAVLM_SV_HELP


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = tmp_path_factory.mktemp("tiny_wavlm_sv")
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                      conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 16, 16, 32),
                      tdnn_kernel=(5, 3, 3, 1, 1), tdnn_dilation=(1, 2, 3, 1, 1), xvector_output_dim=24,
                      num_buckets=32, max_bucket_distance=80)
    torch.manual_seed(0)
    WavLMForXVector(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return folder


def test_wavlm_scorer_from_a_local_folder(tiny_wavlm, audio):
    ref, sr, aux, sr_aux = audio
    scorer = load_scorer("wavlm-sv", wavlm_dir=tiny_wavlm)
    assert isinstance(scorer, WavLMSVScorer) and scorer.name == "wavlm-sv"
    e = scorer.embed(ref, sr)
    assert e.shape == (24,)
    assert scorer.similarity(ref, sr, ref.copy(), sr) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= scorer.similarity(ref, sr, aux, sr_aux) <= 1.0
