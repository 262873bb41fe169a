"""The default local embedder (int8 ONNX) against the float model it is derived from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from stores.models import minilm_onnx
from stores.models.embeddings import LocalMiniLM

SENTENCES = [
    "I adopted a rescue dog named Biscuit last spring.",
    "What is the name of my dog?",
    "Melanie ran a charity race for mental health on Saturday.",
    "My sister moved to Lisbon and works as a nurse there.",
    "When did Caroline go to the LGBTQ support group?",
    "The quarterly revenue grew by eleven percent. " * 20,  # long: truncated at 256 tokens
]


def test_int8_vectors_track_the_float_model(minilm: Embeddings) -> None:
    reference = np.array(LocalMiniLM(threads=1).embed_documents(SENTENCES))
    ours = np.array(minilm.embed_documents(SENTENCES))
    assert ours.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cosines = (reference * ours).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    # Ranking survives quantization: the question finds the sentence that answers it.
    question = np.array(minilm.embed_query(SENTENCES[1]))
    assert int(np.argmax(ours @ question)) in (0, 1)
    assert int(np.argmax(ours[[0, 2, 3, 4]] @ question)) == 0


def test_a_text_gets_one_vector_as_query_or_document(minilm: Embeddings) -> None:
    docs = minilm.embed_documents(SENTENCES)
    for text, doc in zip(SENTENCES, docs, strict=True):
        assert np.allclose(minilm.embed_query(text), doc, atol=1e-6)


def test_export_happens_once_per_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Embeddings
) -> None:
    calls: list[Path] = []
    real_export = minilm_onnx._export

    def counting_export(model_path: Path, target: Path) -> None:
        calls.append(target)
        real_export(model_path, target)

    monkeypatch.setattr(minilm_onnx, "_export", counting_export)
    first = minilm_onnx.OnnxMiniLM(tmp_path)
    second = minilm_onnx.OnnxMiniLM(tmp_path)
    assert len(calls) == 1
    assert [p.name for p in tmp_path.glob("*.onnx")] == [calls[0].name]
    assert not list(tmp_path.glob("tmp*")), "the staging directory is cleaned up"
    assert np.allclose(first.embed_query("hello there"), second.embed_query("hello there"))
    assert np.allclose(first.embed_query("hello there"), minilm.embed_query("hello there"))
