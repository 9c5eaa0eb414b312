"""Fixtures of the refaudio tests: a service in a temporary home, the tiny fixture engine."""
from __future__ import annotations

import pytest

from ra_helpers import make_settings


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def service(settings):
    from refaudio.service import RefAudioService

    svc = RefAudioService(settings, engine=object(), auto_resume=False)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory, parity_dir, tiny_assets):
    from gsv_core.api import Engine

    tmp = tmp_path_factory.mktemp("ra_engine")
    settings = make_settings(tmp)
    return Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp / "tts_log.csv")


@pytest.fixture
def models(parity_dir):
    return {"gpt_path": str(parity_dir / "s1_v2.ckpt"), "sovits_path": str(parity_dir / "s2_v2.pth.xz")}
