from pathlib import Path

import pytest
import torch
from helpers import make_piano_maestro

ROOT = Path(__file__).resolve().parents[1]

# The suite runs on 2 shared cores: one intra-op thread per test process is faster than two
# threads fighting over them (and subprocess trainers inherit it through the environment).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A prepared cache of piano-like audio: 4 train, 1 validation, 1 test piece of 3 s."""
    from audiogen.frontend import FrontendConfig
    from audiogen.maestro import list_maestro
    from audiogen.preparation import prepare_cache

    root = make_piano_maestro(tmp_path_factory.mktemp("maestro"), {"train": 4, "validation": 1, "test": 1})
    cache = tmp_path_factory.mktemp("cache")
    report = prepare_cache(list_maestro(root), cache, FrontendConfig(), workers=1, progress=False)
    assert report.prepared == 6
    return cache


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny spectrogram (VAE + prior) and vocoder folders, exported as training does."""
    from audiogen.checkpoint import export_model
    from audiogen.config import from_dict, to_dict
    from audiogen.mixture_prior import LatentPrior, LatentPriorConfig
    from audiogen.spec import SpecVAE, SpecVAEConfig
    from audiogen.tasks import load_trainer_config
    from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

    out = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae_cfg = load_trainer_config(ROOT / "configs/spec/tiny.yaml")
    prior_cfg = load_trainer_config(ROOT / "configs/spec/tiny_prior.yaml")
    voc_cfg = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml")
    vae_model = from_dict(SpecVAEConfig, vae_cfg.model, "model")
    vae = SpecVAE.from_config(vae_model, vae_cfg.frontend)
    prior = LatentPrior.from_config(from_dict(LatentPriorConfig, prior_cfg.model, "model"), latent_dim=vae.latent_dim)
    resolved = dict(to_dict(prior_cfg), vae_model=to_dict(vae_model))
    export_model(out / "model", {"vae": vae, "prior": prior}, resolved, {})
    vocoder = build_vocoder(vocoder_config_from_dict(voc_cfg.model), voc_cfg.frontend)
    export_model(out / "vocoder", {"vocoder": vocoder}, to_dict(voc_cfg), {})
    return {"model": out / "model", "vocoder": out / "vocoder"}
