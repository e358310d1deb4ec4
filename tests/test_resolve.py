"""Backend resolution from configuration."""

import pytest

from joyvl_agent import ModelError, load_config
from joyvl_agent.model import _resolve
from joyvl_agent.model._resolve import (
    budget_from_config,
    dialect_for,
    resolve_backend,
    sampling_from_config,
)
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.model.backends.oracle import OracleBackend


def model_config(**kw):
    return load_config(overrides={"model": kw}).model


def test_url_selects_http_with_its_settings():
    backend = resolve_backend(model_config(url="http://127.0.0.1:8000/v1", name="joy",
                                           timeout_s=5, vllm=True))
    assert isinstance(backend, OpenAIBackend)
    assert (backend.model, backend.vllm, backend.options.timeout) == ("joy", True, 5.0)
    assert dialect_for(model_config(), backend) == "native"


def test_oracle_needs_a_synthetic_clip(tmp_path):
    with pytest.raises(ModelError, match="synthetic clip"):
        resolve_backend(model_config(name="oracle"))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_backend(model_config(name="oracle"), source=str(tmp_path / "x.mp4"))


def test_nothing_loadable_names_every_option(monkeypatch):
    monkeypatch.setattr(_resolve, "cuda_available", lambda: False)
    monkeypatch.setattr(_resolve, "_importable", lambda name: False)
    with pytest.raises(ModelError) as info:
        resolve_backend(model_config())
    text = str(info.value)
    for option in ("--model-url", "joyvl-agent[vllm]", "joyvl-agent[local]", "--model oracle"):
        assert option in text


def test_vllm_preferred_on_cuda(monkeypatch):
    monkeypatch.setattr(_resolve, "cuda_available", lambda: True)
    monkeypatch.setattr(_resolve, "_importable", lambda name: name == "vllm")
    backend = resolve_backend(model_config(max_model_len=65536))
    assert backend.name == "vllm" and backend._engine_args["max_model_len"] == 65536


def test_budget_and_sampling_from_config():
    cfg = model_config(max_model_len=16384, chunk_turns=50, carry_turns=80,
                       sampling={"temperature": 0.2, "max_tokens": 64})
    budget = budget_from_config(cfg)
    assert (budget.max_model_len, budget.chunk_turns, budget.carry_turns) == (16384, 50, 49)
    sampling = sampling_from_config(cfg)
    assert (sampling.temperature, sampling.max_tokens, sampling.top_k) == (0.2, 64, 40)
    with pytest.raises(ModelError, match="valid keys"):
        sampling_from_config(model_config(sampling={"temprature": 1.0}))


def test_oracle_backend_from_ground_truth(tmp_path):
    from joyvl_agent.synth import generate

    clip = tmp_path / "card.mp4"
    generate("card", clip, seed=2, duration=12, size=(320, 180))
    backend = resolve_backend(model_config(name="oracle"), source=str(clip))
    assert isinstance(backend, OracleBackend) and "not a model" in backend.name


def test_local_backend_only_when_the_model_is_on_disk(monkeypatch, tmp_path):
    monkeypatch.setattr(_resolve, "cuda_available", lambda: False)
    monkeypatch.setattr(_resolve, "_importable", lambda name: name in ("torch", "transformers"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match="no model backend"):
        resolve_backend(model_config(name="some-org/not-downloaded"))
    folder = tmp_path / "tiny"
    folder.mkdir()
    backend = resolve_backend(model_config(name=str(folder)))
    assert backend.name == "local"
