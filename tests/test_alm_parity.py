"""The audio-language model (models/alm, Qwen2-Audio kind) against transformers'
Qwen2AudioForConditionalGeneration: a tiny random-weight model saved as sharded safetensors,
imported with `strongaudio import-hf`; features from the project's whisper128 frontend for
clips of four lengths (padded batch); logits, and greedy generation on one device and on a
(data 2, tensor 4) mesh of the 8 CPU devices; captions through the Captioner."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch (CPU)")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

import jax.numpy as jnp  # noqa: E402

from strongaudio_jax import cli  # noqa: E402
from strongaudio_jax.infer import alm_caption, generate as gen, import_hf  # noqa: E402
from strongaudio_jax.models.alm import AudioLM, output_lengths  # noqa: E402
from strongaudio_jax.models.lm import QwenLM, init_cache, place_embeds  # noqa: E402
from strongaudio_jax.parallel.mesh import make_mesh  # noqa: E402

from lm_fixtures import write_tokenizer  # noqa: E402

AUDIO_TOKEN = 3  # <|AUDIO|> in write_tokenizer(audio=True)
WINDOW = 80  # mel frames the tiny encoder takes (max_source_positions 40)
FRAMES = [80, 57, 30, 9]  # valid frames per clip: 20, 14, 7 and 2 audio tokens
PROMPTS = [[10, 11, AUDIO_TOKEN, 12, 13, 14], [AUDIO_TOKEN, 20], [30, 31, 32, AUDIO_TOKEN],
           [40, AUDIO_TOKEN, 41, 42, 43, 44, 45, 46]]
STEPS = 24


@pytest.fixture(scope="module")
def alm(tmp_path_factory):
    """(torch model, imported AudioLM, params, import directory)."""
    torch.manual_seed(0)
    text = transformers.Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=5000.0,
        initializer_range=0.2, tie_word_embeddings=False, eos_token_id=None, bos_token_id=None,
        pad_token_id=0)
    audio = transformers.Qwen2AudioEncoderConfig(
        d_model=32, encoder_attention_heads=4, encoder_ffn_dim=64, encoder_layers=2,
        num_mel_bins=128, max_source_positions=WINDOW // 2)
    cfg = transformers.Qwen2AudioConfig(audio_config=audio.to_dict(), text_config=text.to_dict(),
                                        audio_token_index=AUDIO_TOKEN)
    model = transformers.Qwen2AudioForConditionalGeneration(cfg).eval()
    projector = next(m for name, m in model.named_modules()  # .model. in transformers 5 only
                     if name.endswith("multi_modal_projector.linear"))
    with torch.no_grad():  # audio vectors as large as token embeddings: the audio decides
        projector.weight.mul_(10.0)
    src = tmp_path_factory.mktemp("qwen2_audio_hf")
    model.save_pretrained(src, max_shard_size="20KB")
    assert os.path.isfile(src / "model.safetensors.index.json")  # the sharded path
    write_tokenizer(str(src), audio=True)
    out = tmp_path_factory.mktemp("qwen2_audio_out") / "ckpt"
    assert cli.main(["import-hf", "--from", str(src), "--out", str(out)]) == 0
    flax_model, params = import_hf.load(str(out))
    assert isinstance(flax_model, AudioLM)
    return model, flax_model, params, out


def _audio(flax_model):
    """Whisper-128 features of noisy tones (clip b has FRAMES[b] * 160 + b samples)."""
    rng = np.random.default_rng(1)
    t = np.arange(WINDOW * 160) / 16000
    waves = np.stack([0.3 * np.sin(2 * np.pi * (300 + 400 * b) * t) + 0.05 * rng.normal(size=t.size)
                      for b in range(len(FRAMES))]).astype(np.float32)
    lengths = np.minimum(np.array(FRAMES) * 160 + np.arange(len(FRAMES)), waves.shape[1])
    features, frames = alm_caption.audio_features(flax_model, waves, lengths)
    assert features.shape == (len(FRAMES), WINDOW, 128) and frames.tolist() == FRAMES
    return waves, lengths, features, frames


def _expanded(flax_model, frames):
    counts = output_lengths(np.array(frames))
    assert counts.tolist() == [20, 14, 7, 2]
    return gen.left_pad([alm_caption.expand_placeholder(p, c, AUDIO_TOKEN)
                         for p, c in zip(PROMPTS, counts)])


def _torch_inputs(tokens, mask, features, frames):
    return dict(input_ids=torch.tensor(tokens).long(), attention_mask=torch.tensor(mask).long(),
                input_features=torch.tensor(features).transpose(1, 2).contiguous(),
                feature_attention_mask=(torch.arange(WINDOW)[None, :]
                                        < torch.tensor(frames)[:, None]).long())


def test_logits_match(alm):
    model, flax_model, params, _ = alm
    _, _, features, frames = _audio(flax_model)
    tokens, mask = _expanded(flax_model, frames)
    with torch.no_grad():
        ref = model(**_torch_inputs(tokens, mask, features, frames)).logits.numpy()
        silent = model(**_torch_inputs(tokens, mask, np.zeros_like(features), frames)).logits
    assert np.abs(silent.numpy() - ref)[mask].max() > 0.1 * np.abs(ref).max()  # audio matters
    b, t = tokens.shape
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    out, _ = flax_model.apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions), 0,
                              jnp.asarray(mask), init_cache(flax_model.cfg.text, b, t),
                              jnp.asarray(features), jnp.asarray(frames))
    out = np.asarray(out)
    np.testing.assert_allclose(out[mask], ref[mask], rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _torch_greedy(model, tokens, mask, features, frames):
    with torch.no_grad():
        out = model.generate(**_torch_inputs(tokens, mask, features, frames), do_sample=False,
                             max_new_tokens=STEPS, min_new_tokens=STEPS, pad_token_id=0)
    return out[:, tokens.shape[1]:].tolist()


def test_greedy_generation_matches(alm):
    model, flax_model, params, _ = alm
    _, _, features, frames = _audio(flax_model)
    tokens, mask = _expanded(flax_model, frames)
    ref = _torch_greedy(model, tokens, mask, features, frames)
    assert len(set(map(tuple, ref))) > 1  # the rows differ
    got = alm_caption.generate_with_audio(flax_model, params, PROMPTS, features, frames, STEPS)
    assert got == ref
    mesh = make_mesh({"data": 2, "tensor": 4})
    sharded = gen.shard_params(flax_model, params, mesh)
    q = sharded["audio_tower"]["layers_0"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec[1] == "tensor"  # the encoder's 4 heads split over the tensor axis
    assert alm_caption.generate_with_audio(flax_model, sharded, PROMPTS, features, frames, STEPS,
                                           mesh=mesh) == ref


def test_captioner(alm):
    """The Captioner over an import-hf directory: prompt text with the placeholder, whisper128
    features, greedy decoding; text is random (random weights), one string per clip."""
    _, flax_model, params, out = alm
    waves, lengths, features, frames = _audio(flax_model)
    cap = alm_caption.Captioner(str(out))
    texts = cap.caption(waves, lengths, max_new_tokens=6)
    assert len(texts) == len(FRAMES) and all(isinstance(t, str) for t in texts)
    ids = cap.prompt_ids(alm_caption.DEFAULT_PROMPT)
    direct = alm_caption.generate_with_audio(flax_model, params, [ids] * len(FRAMES), features,
                                             frames, 6, eos_id=cap.eos_id, pad_id=cap.pad_id)
    assert texts == [cap.tokenizer.decode(d).strip() for d in direct]
    with pytest.raises(ValueError, match="placeholder"):
        cap.caption(waves, lengths, prompt="no audio here")


def test_captioner_on_a_mesh(alm):
    """3 clips on a (data 2, tensor 4) mesh: the batch is filled up to 4 rows and cut back;
    sampled with one key per clip (decoding.row_keys of the clip ids), the captions are those
    of one device, and a clip's caption does not depend on its batch (order reversed). (Greedy
    on the mesh: test_greedy_generation_matches.)"""
    from strongaudio_jax.infer.decoding import row_keys
    _, flax_model, _, out = alm
    waves, lengths, _, _ = _audio(flax_model)
    waves, lengths = waves[:3], lengths[:3]
    keys = row_keys(7, ["a", "b", "c"])
    one = alm_caption.Captioner(str(out))
    mesh = make_mesh({"data": 2, "tensor": 4})
    eight = alm_caption.Captioner(str(out), mesh=mesh)
    sampled = one.caption(waves, lengths, max_new_tokens=6, temperature=1.5, row_keys=keys)
    assert one.caption(waves, lengths, max_new_tokens=6, temperature=1.5,
                       row_keys=row_keys(8, ["a", "b", "c"])) != sampled  # keys matter
    assert eight.caption(waves, lengths, max_new_tokens=6, temperature=1.5,
                         row_keys=keys) == sampled
    assert one.caption(waves[::-1], lengths[::-1], max_new_tokens=6, temperature=1.5,
                       row_keys=keys[::-1]) == sampled[::-1]


def test_caption_job_with_the_imported_model(alm, tiny_corpus, tmp_path, monkeypatch):
    """`strongaudio caption` with model.path = the import-hf directory: every held-out clip is
    captioned (chunked into the encoder's 0.8 s window), provenance names the model and the
    prompt; sampled, 1 device writes the same bytes as 8 (a clip's caption depends on it
    alone: one key per record)."""
    import json

    from strongaudio_jax import config
    from strongaudio_jax.data import schema, tfrecord
    from strongaudio_jax.infer import engine, jobs
    from tests.conftest import REPO

    monkeypatch.setattr(engine, "enable_compilation_cache", lambda path: "off (in-process test)")
    out = alm[3]
    files = f"{tiny_corpus}/heldout-*.tfrecord"

    def run(name, *extra):
        cfg = config.load(f"{REPO}/configs/caption.py:smoke", [
            f"model.path={out}", f"input.files={files}", f"output.dir={tmp_path / name}",
            "buckets.seconds=(0.8,)", "decode.max_len=4", *extra])
        return jobs.run(cfg, "caption")

    summary = run("o8")
    clips = [schema.example_to_clip(r) for p in sorted((tmp_path / "o8").glob("*.tfrecord"))
             for r in tfrecord.read_records(str(p))]
    originals = [schema.example_to_clip(r) for p in sorted(tiny_corpus.glob("heldout-*.tfrecord"))
                 for r in tfrecord.read_records(str(p))]
    assert [c.id for c in clips] == [c.id for c in originals]
    assert summary["counts"]["written"] == len(originals) > 0
    assert summary["counts"]["chunked"] > 0  # the clips are longer than the 0.8 s window
    for clip, original in zip(clips, originals):
        assert clip.caption != original.caption and clip.summary == original.summary
        prov = json.loads(clip.caption_model)
        assert prov["model"] == "qwen2_audio (import-hf)" and prov["settings"]["prompt"]
    # sampled: one key per record (decode.seed, clip id), so 8 devices write what 1 writes
    run("s8", "decode.strategy=sample", "decode.temperature=1.5")
    run("s1", "decode.strategy=sample", "decode.temperature=1.5", "devices=1")
    sampled = [schema.example_to_clip(r) for p in sorted((tmp_path / "s8").glob("*.tfrecord"))
               for r in tfrecord.read_records(str(p))]
    assert [c.caption for c in sampled] != [c.caption for c in clips]
    assert json.loads(sampled[0].caption_model)["settings"]["strategy"] == "sample"
    for p in sorted((tmp_path / "s8").glob("*.tfrecord")):
        assert p.read_bytes() == (tmp_path / "s1" / p.name).read_bytes()
    with pytest.raises(Exception, match="'greedy' or 'sample'"):
        run("beam", "decode.strategy=beam")


def test_two_clips_per_prompt(alm):
    """Qwen2-Audio prompts with two audio placeholders each (clips 0, 1 in row 0; 2, 3 in row 1;
    "Audio 1: ... Audio 2: ..."): logits and greedy tokens as transformers', which fills the
    placeholders of the batch with the clips in order."""
    model, flax_model, params, _ = alm
    _, _, features, frames = _audio(flax_model)
    prompts = [[10, AUDIO_TOKEN, 11, AUDIO_TOKEN, 12], [AUDIO_TOKEN, 20, 21, AUDIO_TOKEN]]
    counts = output_lengths(np.array(frames))
    tokens, mask = gen.left_pad([alm_caption.expand_placeholders(p, counts[2 * b:2 * b + 2],
                                                                 AUDIO_TOKEN)
                                 for b, p in enumerate(prompts)])
    with torch.no_grad():
        ref = model(**_torch_inputs(tokens, mask, features, frames)).logits.numpy()
        steps = model.generate(**_torch_inputs(tokens, mask, features, frames), do_sample=False,
                               max_new_tokens=8, min_new_tokens=8, pad_token_id=0)
    b, t = tokens.shape
    # the model's own forward: row b's vectors are its two clips' one after the other
    vectors, _ = flax_model.apply({"params": params}, jnp.asarray(features), jnp.asarray(frames),
                                  method=AudioLM.encode_audio)
    rows = [np.concatenate([np.asarray(vectors[c, :counts[c]]) for c in (2 * r, 2 * r + 1)])
            for r in range(2)]
    embeds = np.stack([np.pad(v, ((0, max(map(len, rows)) - len(v)), (0, 0))) for v in rows])
    text = QwenLM(flax_model.cfg.text)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    placed = place_embeds(jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(embeds), AUDIO_TOKEN)
    out, _ = text.apply({"params": params["language_model"]}, jnp.asarray(tokens),
                        jnp.asarray(positions), 0, jnp.asarray(mask),
                        init_cache(flax_model.cfg.text, b, t), *placed)
    np.testing.assert_allclose(np.asarray(out)[mask], ref[mask], rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())
    got = alm_caption.generate_with_audio(flax_model, params, prompts, features, frames, 8,
                                          clips_per_prompt=[2, 2])
    assert got == steps[:, t:].tolist()
    with pytest.raises(ValueError, match="one audio placeholder token .* per clip"):
        alm_caption.generate_with_audio(flax_model, params, prompts, features, frames, 8,
                                        clips_per_prompt=[1, 3])


def test_bfloat16_logits_match(alm, tmp_path):
    """The model saved by transformers in bfloat16, imported with --dtype bfloat16 and run in
    bfloat16, against transformers' bfloat16 run. The two round to bfloat16 (8-bit mantissa) at
    different points (fused vs unfused ops, accumulation order), so they cannot agree to 1e-4;
    the tolerance is each side's own rounding error: our logits must be no further from
    transformers' bfloat16 logits than 2x transformers' bfloat16 logits are from its float32
    ones, and no further from float32 than 2x transformers' bf16 error (a wrong weight or a
    missing cast gives errors of the logits' own size, far above that). Measured on this
    model: 0.14 from transformers' bf16 and 0.14 from float32, transformers' own bf16 error
    0.18, logits up to 6.1."""
    import copy
    model, flax_model, _, _ = alm
    _, _, features, frames = _audio(flax_model)
    tokens, mask = _expanded(flax_model, frames)
    inputs = _torch_inputs(tokens, mask, features, frames)
    with torch.no_grad():
        ref32 = model(**inputs).logits.numpy()
        half = copy.deepcopy(model).to(torch.bfloat16)
        ref16 = half(**dict(inputs, input_features=inputs["input_features"].bfloat16())
                     ).logits.float().numpy()
    half.save_pretrained(tmp_path / "hf")
    write_tokenizer(str(tmp_path / "hf"), audio=True)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "out"),
                     "--dtype", "bfloat16"]) == 0
    flax16, params16 = import_hf.load(str(tmp_path / "out"), dtype=jnp.bfloat16)
    assert params16["audio_tower"]["conv1"]["kernel"].dtype == jnp.bfloat16
    b, t = tokens.shape
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    out, _ = flax16.apply({"params": params16}, jnp.asarray(tokens), jnp.asarray(positions), 0,
                          jnp.asarray(mask), init_cache(flax16.cfg.text, b, t, jnp.bfloat16),
                          jnp.asarray(features), jnp.asarray(frames))
    out = np.asarray(out, np.float32)[mask]
    ref16, ref32 = ref16[mask], ref32[mask]
    torch_err = np.abs(ref16 - ref32).max()
    assert 0 < torch_err < 0.1 * np.abs(ref32).max()  # bfloat16 really ran, and is close
    assert np.abs(out - ref16).max() <= 2 * torch_err, (np.abs(out - ref16).max(), torch_err)
    assert np.abs(out - ref32).max() <= 2 * torch_err, (np.abs(out - ref32).max(), torch_err)
