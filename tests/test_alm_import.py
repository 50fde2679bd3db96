"""import-hf of an audio-language model (qwen2_audio) without transformers: checkpoints written
with safetensors in both name layouts (the Hub's and transformers 5's), bfloat16 storage, the
refusals, and the placeholder / feature helpers of infer/alm_caption.py."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from strongaudio_jax import cli
from strongaudio_jax.infer import alm_caption, import_hf
from strongaudio_jax.models.alm import AudioLM, AudioLMConfig, output_lengths

from lm_fixtures import import_refused, write_hf_checkpoint

HF_CONFIG = {
    "model_type": "qwen2_audio", "architectures": ["Qwen2AudioForConditionalGeneration"],
    "audio_token_index": 3,
    "audio_config": {"model_type": "qwen2_audio_encoder", "d_model": 16, "encoder_layers": 1,
                     "encoder_attention_heads": 2, "encoder_ffn_dim": 32, "num_mel_bins": 80,
                     "max_source_positions": 20},
    # rope_theta, rms_norm_eps, tie_word_embeddings left out: transformers' defaults
    "text_config": {"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32,
                    "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 4,
                    "num_key_value_heads": 2}}


@pytest.mark.parametrize("layout", [0, 1])
def test_round_trip(tmp_path, layout):
    tensors = write_hf_checkpoint(tmp_path / "hf", HF_CONFIG, layout=layout)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out",
                     str(tmp_path / "out")]) == 0
    model, params = import_hf.load(str(tmp_path / "out"))
    assert isinstance(model, AudioLM) and model.cfg.text.rope_theta == 10000.0
    prefix = ("", "model.")[layout]
    conv = params["audio_tower"]["conv1"]["kernel"]  # flax [width, in, out], torch [out, in, width]
    np.testing.assert_array_equal(conv.transpose(2, 1, 0),
                                  tensors[prefix + "audio_tower.conv1.weight"])
    out = params["audio_tower"]["layers_0"]["self_attn"]["out_proj"]["kernel"]  # [heads, d, model]
    name = prefix + "audio_tower.layers.0.self_attn.out_proj.weight"
    np.testing.assert_array_equal(out.reshape(16, 16).T, tensors[name])
    np.testing.assert_array_equal(params["audio_tower"]["layer_norm"]["scale"],
                                  tensors[prefix + "audio_tower.layer_norm.weight"])
    head = ("language_model.lm_head.weight", "lm_head.weight")[layout]
    np.testing.assert_array_equal(params["language_model"]["lm_head"]["kernel"].T, tensors[head])


def test_bfloat16_storage(tmp_path):
    tensors = write_hf_checkpoint(tmp_path / "hf", HF_CONFIG)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "out"),
                     "--dtype", "bfloat16"]) == 0
    _, params = import_hf.load(str(tmp_path / "out"))
    w = params["multi_modal_projector"]["linear"]["kernel"]
    assert w.dtype.name == "bfloat16"
    ref = tensors["multi_modal_projector.linear.weight"].T
    np.testing.assert_allclose(w.astype(np.float32), ref, rtol=1e-2)
    assert not np.array_equal(w.astype(np.float32), ref)  # rounded to bfloat16


def test_refusals(tmp_path, capsys):
    tensors = write_hf_checkpoint(tmp_path / "hf", HF_CONFIG)
    del tensors["audio_tower.layers.0.fc2.bias"]
    save_file(tensors, str(tmp_path / "hf" / "model.safetensors"))
    err = import_refused(tmp_path, capsys)
    assert "audio_tower.layers.0.fc2.bias" in err and "missing" in err
    write_hf_checkpoint(tmp_path / "hf", HF_CONFIG)
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128}))
    err = import_refused(tmp_path, capsys)
    assert "preprocessor_config.json" in err and "128" in err and "80" in err
    os.remove(tmp_path / "hf" / "preprocessor_config.json")
    omni = dict(HF_CONFIG, audio_config=dict(HF_CONFIG["audio_config"],
                                             model_type="qwen3_omni_moe_audio_encoder"))
    (tmp_path / "hf" / "config.json").write_text(json.dumps(omni))
    err = import_refused(tmp_path, capsys)
    assert "qwen3_omni_moe_audio_encoder" in err and "config.json" in err


def test_placeholders_and_features():
    cfg = AudioLMConfig.from_hf(HF_CONFIG)
    model = AudioLM(cfg)
    assert alm_caption.expand_placeholder([7, 3, 8], 3, 3) == [7, 3, 3, 3, 8]
    with pytest.raises(ValueError, match="exactly one"):
        alm_caption.expand_placeholder([3, 3], 2, 3)
    rng = np.random.default_rng(0)
    waves = rng.normal(size=(2, 60 * 160)).astype(np.float32) * 0.1  # past the 40-frame window
    feats, frames = alm_caption.audio_features(model, waves, [60 * 160, 25 * 160])
    assert feats.shape == (2, 40, 80) and frames.tolist() == [40, 25]
    assert output_lengths(frames).tolist() == [10, 6]
    # padding after a clip is Whisper's silence: the clip's peak - 2 (normalised units)
    np.testing.assert_allclose(feats[1, 25:], feats[1, :25].max() - 2.0, rtol=1e-6)


def test_load_onto_a_mesh(tmp_path):
    """Parameters read straight into their shards on a (data 2, tensor 4) mesh equal the host
    copy, placed as generate.shard_params places them."""
    from strongaudio_jax.infer import generate as gen
    from strongaudio_jax.parallel.mesh import make_mesh
    import jax

    write_hf_checkpoint(tmp_path / "hf", HF_CONFIG)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out",
                     str(tmp_path / "out")]) == 0
    mesh = make_mesh({"data": 2, "tensor": 4})
    model, host = import_hf.load(str(tmp_path / "out"))
    _, sharded = import_hf.load(str(tmp_path / "out"), mesh=mesh)
    expected = gen.param_shardings(model, mesh)
    flat = jax.tree_util.tree_leaves_with_path(sharded)
    assert len(flat) == len(jax.tree.leaves(host))
    for path, leaf in flat:
        want = expected
        for key in path:
            want = want[key.key]
        assert leaf.sharding == want, path
    up = sharded["language_model"]["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert up.sharding.spec[1] == "tensor" and len(up.addressable_shards) == 8
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(sharded)):
        np.testing.assert_array_equal(a, np.asarray(b))
