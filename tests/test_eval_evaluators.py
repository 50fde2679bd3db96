"""Training-time evaluators (eval/evaluators.py): embedding on the 8-device mesh equals the
one-device embedding in record order (padding dropped, clip cap kept), the registry builds
what the config names, and the probe / tagging evaluators score a fresh encoder."""

import jax
import numpy as np
import pytest

from strongaudio_jax import config as config_lib
from strongaudio_jax.data import pipeline, schema
from strongaudio_jax.eval import evaluators
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import log as log_lib, step as step_lib
from tests.conftest import REPO


@pytest.fixture(scope="module")
def setup(tiny_corpus, tmp_path_factory):
    cfg = config_lib.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord", "data.batch_size=8",
        "data.clip_seconds=1.0", "model.max_frames=128", "probe.tasks=('domain',)",
        "probe.clip_seconds=1.0", "probe.batch_size=8", "probe.steps=50"])
    vocab = pipeline.tag_vocabulary(pipeline.expand_paths(cfg.data.train_files))
    program = step_lib.build(cfg, len(vocab), vocab)
    mesh = mesh_lib.make_mesh(cfg.mesh)  # data 8
    init, _, _ = program.compile(mesh)
    state = init(jax.random.key(0))
    featurizer = pipeline.featurizer_from_config(cfg, vocab, train=True)
    logger = log_lib.Logger(str(tmp_path_factory.mktemp("eval_log")))
    ctx = evaluators.Context(cfg, program, featurizer, mesh,
                             pipeline.expand_paths(cfg.data.train_files), logger)
    return cfg, program, state, ctx


def test_mesh_embedding_equals_one_device_in_record_order(setup):
    cfg, program, state, ctx = setup
    files = pipeline.expand_paths(cfg.data.eval_files)  # 12 clips: batches of 8, last padded
    feat = evaluators.eval_featurizer(ctx.featurizer, 1.0, 16000)
    jitted = evaluators.on_mesh(program.embed, ctx.mesh, program.rules)
    params = state.params["encoder"]
    assert len(params["patch_embed"]["kernel"].sharding.device_set) == 8
    got, clips = evaluators.embed(files, feat, jitted, params, 8, ctx.mesh, program.rules)
    assert got.shape == (12, 64) and len(clips) == 12

    source = pipeline.TFRecordSource(files)
    rows = [feat(source[i]) for i in range(12)]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch = pipeline.waveform_to_float(batch)
    one = jax.device_put(jax.device_get(params), jax.devices()[0])
    want = np.asarray(jax.jit(program.embed)(one, batch))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert [c.id for c in clips] == [schema.example_to_clip(*source[i]).id
                                     for i in range(12)]

    capped, clips = evaluators.embed(files, feat, jitted, params, 8, ctx.mesh, program.rules,
                                     max_clips=5)
    assert capped.shape == (5, 64) and len(clips) == 5
    np.testing.assert_allclose(capped, want[:5], rtol=1e-4, atol=1e-5)


def test_registry_builds_the_named_evaluators_and_they_score(setup):
    cfg, program, state, ctx = setup
    default = evaluators.from_config(ctx)  # no `evals`: the probe block and the tag head
    assert [type(e).__module__.rsplit(".", 1)[1] for e in default] == ["probe", "tagging"]

    named = cfg.copy_and_resolve_references()
    with named.unlocked():
        named.evals = {"quick": dict(type="probe", every=3, max_clips=16, tasks=("domain",),
                                     pooling=("mean", "attention"), steps=30, batch_size=8,
                                     clip_seconds=1.0),
                       "tags": dict(type="tagging", every=0, batch_size=8, clip_seconds=1.0)}
    evals = evaluators.from_config(evaluators.Context(named, program, ctx.featurizer, ctx.mesh,
                                                      ctx.train_files, ctx.logger))
    quick, tags = evals
    assert [evaluators.due(e.every, named, 3) for e in evals] == [True, False]
    scores = quick.run(state.params, 0)
    assert set(scores) == {"probe/domain_accuracy", "probe/domain_attention_accuracy"}
    assert quick.results[0].num_train == 16 and 0.0 <= scores["probe/domain_accuracy"] <= 1.0
    result = tags.run(state.params, 0)
    assert 0.0 < result["tags/mAP"] <= 1.0

    with named.unlocked():
        named.evals = {"x": dict(type="nosuch")}
    with pytest.raises(config_lib.ConfigError, match="evals.x.type='nosuch'"):
        evaluators.from_config(evaluators.Context(named, program, ctx.featurizer, ctx.mesh,
                                                  ctx.train_files, ctx.logger))
    with named.unlocked():
        named.evals = {"p": dict(type="probe", files="typo")}
    with pytest.raises(config_lib.ConfigError, match="unknown key"):
        evaluators.from_config(evaluators.Context(named, program, ctx.featurizer, ctx.mesh,
                                                  ctx.train_files, ctx.logger))


def test_a_bad_record_raises_naming_it_or_is_skipped_and_counted(setup, tmp_path):
    """The bad-data policy in evaluation: strict names the file and record; data.skip_bad
    leaves the record out of the embeddings and the labels and counts it."""
    import shutil

    from strongaudio_jax.data import index as index_lib

    cfg, program, state, ctx = setup
    files = pipeline.expand_paths(cfg.data.eval_files)
    copies = [str(shutil.copy(f, tmp_path / f.rsplit("/", 1)[1])) for f in files]
    idx = index_lib.build_index(copies)
    f, rec, offset, length = (int(v) for v in idx.rows[3])
    with open(copies[f], "r+b") as fh:  # one byte of record 3's payload: its data CRC fails
        fh.seek(offset + length // 2)
        byte = fh.read(1)
        fh.seek(offset + length // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    feat = evaluators.eval_featurizer(ctx.featurizer, 1.0, 16000)
    jitted = evaluators.on_mesh(program.embed, ctx.mesh, program.rules)
    params = state.params["encoder"]
    with pytest.raises(Exception, match=rf"{copies[f]}.*record {rec}"):
        evaluators.embed(copies, feat, jitted, params, 8, ctx.mesh, program.rules)

    clean, clean_clips = evaluators.embed(files, feat, jitted, params, 8, ctx.mesh, program.rules)
    bad = pipeline.BadData(skip=True)
    got, clips = evaluators.embed(copies, feat, jitted, params, 8, ctx.mesh, program.rules,
                                  bad=bad)
    assert dict(bad.counts) == {"corrupt_record": 1}  # the data CRC
    keep = [i for i in range(len(clean_clips)) if i != 3]
    assert [c.id for c in clips] == [clean_clips[i].id for i in keep]
    np.testing.assert_allclose(got, clean[keep], rtol=1e-4, atol=1e-5)
