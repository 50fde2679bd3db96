"""Whole clips batched by duration (data.batching='duration_buckets', data/buckets.py):
bucket assignment and batch sizes against hand-computed values, long clips counted, a global
schedule every host agrees on, exact resume, and padding that does not change a clip's loss."""

import numpy as np
import pytest

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import audio, buckets, pipeline, schema, tfrecord

SR = 16000


def write_clips(path, seconds, prefix="c"):
    """One 16-bit FLAC sine clip per duration in `seconds`, named <prefix>-<i>."""
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i, s in enumerate(seconds):
            t = np.arange(int(round(s * SR))) / SR
            w.write(schema.clip_to_example(schema.Clip(
                id=f"{prefix}-{i}", audio=audio.encode(0.2 * np.sin(2 * np.pi * (200 + 10 * i) * t),
                                                       SR), format="flac", sample_rate=SR,
                num_samples=len(t), caption=f"clip {i}", tags=["a"])))
    return str(path)


def clip_id(clip):
    return {"id": np.frombuffer(clip.id.encode().ljust(8)[:8], np.uint8).copy()}


def ids_of(batch):
    return [bytes(r).decode().strip() for r, v in zip(batch["id"], batch["valid"]) if v]


def feat():
    return pipeline.Featurizer({"a": 0}, SR, SR, True, extra=clip_id)


BUCKETS = dict(seconds=(0.1, 0.2, 0.4), max_batch_seconds=1.0, long_clips="skip", multiple=2)
# durations: 0.05 0.1 | 0.15 0.2 | 0.3 0.4 0.4 | 0.5 (too long)
DURATIONS = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.4, 0.5]


def test_batch_sizes_and_assignment_by_hand():
    # 1.0 s budget: 10 clips of 0.1 s, 5 -> 4 (a multiple of 2) of 0.2 s, 2 of 0.4 s
    assert buckets.batch_sizes((0.1, 0.2, 0.4), 1.0, 2) == (10, 4, 2)
    assert buckets.batch_sizes((1.0, 3.0), 12.0, 4) == (12, 4)
    with pytest.raises(buckets.BucketConfigError, match="max_batch_seconds"):
        buckets.batch_sizes((0.4,), 1.0, 4)  # 2 clips, not a multiple of 4
    n = np.array([800, 1600, 1601, 3200, 4800, 6400, 6401])
    samples = (1600, 3200, 6400)
    assert buckets.assign(n, samples, "skip").tolist() == [0, 0, 1, 1, 2, 2, -1]
    assert buckets.assign(n, samples, "crop").tolist() == [0, 0, 1, 1, 2, 2, 2]
    b = buckets.Buckets((0.1, 0.2, 0.4), samples, (10, 4, 2), 2, "skip", (20, 4, 6))
    assert b.host_batch == (5, 2, 1)
    # batches per bucket 20/10, 4/4, 6/2 = 2, 1, 3 of 6
    np.testing.assert_allclose(b.probabilities(), [2 / 6, 1 / 6, 3 / 6])


def test_every_host_draws_the_same_bucket_schedule():
    """The schedule depends only on the seed and the global counts, never on a host's share."""
    host0 = buckets.Buckets((1.0, 2.0), (16000, 32000), (8, 4), 2, "skip", (100, 40))
    host1 = buckets.Buckets((1.0, 2.0), (16000, 32000), (8, 4), 2, "skip", (100, 40))
    s0 = [host0.at(7, b) for b in range(200)]
    assert s0 == [host1.at(7, b) for b in range(200)]
    assert set(s0) == {0, 1} and s0 != [host0.at(8, b) for b in range(200)]


def test_whole_clips_fill_their_bucket_padded_and_long_ones_are_counted(tmp_path):
    path = write_clips(tmp_path / "d.tfrecord", DURATIONS)
    ds = pipeline.train_dataset([path], feat(), 0, seed=3, bucketing=BUCKETS)
    it = iter(ds)
    seen = {0: set(), 1: set(), 2: set()}
    expect_n = {1600: 10, 3200: 4, 6400: 2}
    for _ in range(30):
        b = next(it)
        width = b["waveform"].shape[1]
        assert b["waveform"].shape[0] == expect_n[width]
        j = (1600, 3200, 6400).index(width)
        for cid, n, row in zip(ids_of(b), b["length"], b["waveform"]):
            i = int(cid.split("-")[1])
            assert n == int(round(DURATIONS[i] * SR))  # whole: never cropped
            assert not row[n:].any() and row[:n].any()  # zero padding after the clip
            seen[j].add(i)
    assert seen == {0: {0, 1}, 1: {2, 3}, 2: {4, 5, 6}}  # clip 7 (0.5 s) never delivered
    assert it.bad_counts() == {"long_clip_skipped": 1}


def test_long_clips_are_refused_by_default_or_cropped_and_counted(tmp_path):
    path = write_clips(tmp_path / "d.tfrecord", DURATIONS)
    with pytest.raises(ConfigError, match="1 clip.*longer than the last duration bucket"):
        pipeline.train_dataset([path], feat(), 0, seed=3, bucketing={**BUCKETS, "long_clips": "error"})
    it = iter(pipeline.train_dataset([path], feat(), 0, seed=3,
                                     bucketing={**BUCKETS, "long_clips": "crop"}))
    lengths = {}
    for _ in range(40):
        b = next(it)
        for cid, n in zip(ids_of(b), b["length"]):
            lengths[cid] = int(n)
    assert lengths["c-7"] == 6400  # the 0.5 s clip, cropped to the 0.4 s bucket
    assert it.bad_counts() == {"long_clip_cropped": 1}


def test_config_errors_name_the_setting():
    from ml_collections import ConfigDict

    assert pipeline.bucketing_from_config(ConfigDict({"batching": "crops"}), 2) is None
    with pytest.raises(ConfigError, match="data.buckets"):
        pipeline.bucketing_from_config(ConfigDict({"batching": "duration_buckets", "buckets": (2.0, 1.0),
                                                   "max_batch_seconds": 10.0}), 2)
    with pytest.raises(ConfigError, match="data.max_batch_seconds"):
        pipeline.bucketing_from_config(ConfigDict({"batching": "duration_buckets", "buckets": (1.0,)}), 2)
    with pytest.raises(ConfigError, match="data.batching"):
        pipeline.bucketing_from_config(ConfigDict({"batching": "dynamic"}), 2)


@pytest.mark.parametrize("workers", [0, 2])
def test_restored_iterator_gives_identical_bucketed_batches(tmp_path, workers):
    path = write_clips(tmp_path / "d.tfrecord", DURATIONS)
    ds = pipeline.train_dataset([path], feat(), 0, seed=5, workers=workers, bucketing=BUCKETS)
    it = iter(ds)
    for _ in range(4):
        next(it)
    state = it.get_state()
    expected = [{k: v.copy() for k, v in next(it).items()} for _ in range(6)]
    it.close()
    it2 = iter(pipeline.train_dataset([path], feat(), 0, seed=5, workers=workers, bucketing=BUCKETS))
    it2.set_state(state)
    for want in expected:
        got = next(it2)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    it2.close()
    assert len({w["waveform"].shape for w in expected}) > 1  # several bucket shapes were resumed


def test_padding_to_a_bucket_does_not_change_a_clips_loss():
    """Frontend (log-mel with fixed normalisation), encoder and the MTC head (masked mean of
    frame logits, BCE summed over classes and batch) ignore the padding: a clip zero-padded to
    its bucket has the loss it has alone, and a batch's summed loss is the sum of its clips'."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from strongaudio_jax import config
    from strongaudio_jax import objectives as objectives_lib
    from strongaudio_jax.train import step as step_lib

    cfg = config.load("configs/reference/mtc.py:smoke")
    program = step_lib.build(cfg, num_classes=3)
    params = jax.jit(lambda r: nn.meta.unbox(program.init(r).params))(jax.random.key(0))

    @jax.jit
    def loss_fn(waves, lengths, tags):
        batch = {"waveform": waves, "length": lengths, "tags": tags,
                 "valid": jnp.ones(lengths.shape, bool)}
        feats, mask = program.features(batch)
        enc = program.encoder.apply({"params": params["encoder"]}, feats, mask, train=False)
        batch = {**batch, "features": feats, "frame_mask": mask}
        return objectives_lib.weighted_loss(program.objectives, params["heads"], enc, batch,
                                            jax.random.key(1), train=False)[0]

    def loss(waves, lengths, tags):
        return float(loss_fn(np.asarray(waves, np.float32), np.asarray(lengths, np.int32),
                             np.asarray(tags, np.float32)))

    rng = np.random.default_rng(0)
    a, b = 0.1 * rng.standard_normal(int(0.7 * SR)), 0.1 * rng.standard_normal(SR)
    ta, tb = [[1, 0, 1]], [[0, 1, 0]]
    alone_a, alone_b = loss(a[None], [len(a)], ta), loss(b[None], [len(b)], tb)
    padded = np.zeros((2, SR))
    padded[0, :len(a)], padded[1] = a, b
    assert np.isclose(loss(padded[:1], [len(a)], ta), alone_a, rtol=1e-5)
    assert np.isclose(loss(padded, [len(a), len(b)], ta + tb), alone_a + alone_b, rtol=1e-5)
    # the padding is really ignored: treating it as audio changes the loss
    assert not np.isclose(loss(padded[:1], [SR], ta), alone_a, rtol=1e-3)


_TWO_HOSTS = r"""
import json, sys
from strongaudio_jax.parallel import distributed
distributed.initialize_from_env()
import jax
from strongaudio_jax.data import pipeline
from strongaudio_jax.parallel import mesh as mesh_lib
sys.path.insert(0, {repo!r})
from tests.test_duration_buckets import feat, ids_of

files = pipeline.expand_paths({pattern!r})
bucketing = dict(seconds=(0.1, 0.3), max_batch_seconds=1.2, long_clips="error", multiple=4)
it = iter(pipeline.train_dataset(files, feat(), 0, seed=0, bucketing=bucketing))
mesh = mesh_lib.make_mesh({{"data": -1}})
ids, shapes = [], []
for _ in range(12):
    local = next(it)
    ids += ids_of(local)
    placed = mesh_lib.global_batch({{k: local[k] for k in ("waveform", "length", "valid")}}, mesh)
    shapes.append(list(placed["waveform"].shape))
print("RESULT " + json.dumps({{"ids": ids, "shapes": shapes, "clips": it._spec.buckets.global_clips}}),
      flush=True)
"""


@pytest.mark.slow
def test_two_hosts_with_different_shares_pick_the_same_bucket_at_every_step(tmp_path):
    """Two processes on loopback whose shares hold clips of different buckets (host 0 only
    short ones, host 1 only long ones: alone, each would only ever pick its own bucket) still
    draw one schedule: the same global batch shape at every step, from clip counts summed over
    both; a host's rows in a bucket it holds no clip of are masked."""
    import json
    import sys

    from tests.conftest import REPO
    from tests.test_multiprocess import run_two_hosts

    # files go largest first to the host with fewer records: shard0 -> 0, shard1, shard2 -> 1,
    # shard3 -> 0
    for f, (n, s) in enumerate([(20, 0.1), (19, 0.3), (2, 0.3), (1, 0.1)]):
        write_clips(tmp_path / f"shard{f}.tfrecord", [s] * n, prefix=f"s{f}")
    script = tmp_path / "read.py"
    script.write_text(_TWO_HOSTS.format(repo=str(REPO), pattern=str(tmp_path / "shard*.tfrecord")))
    outs = run_two_hosts([sys.executable, str(script)])
    got = [json.loads(next(line[7:] for line in o.splitlines() if line.startswith("RESULT ")))
           for o in outs]
    assert got[0]["clips"] == got[1]["clips"] == [21, 21]  # summed over the hosts
    # 1.2 s: 12 clips of 0.1 s or 4 of 0.3 s per global batch (multiples of 4 devices)
    assert got[0]["shapes"] == got[1]["shapes"]
    assert {tuple(s) for s in got[0]["shapes"]} == {(12, 1600), (4, 4800)}
    shards = [{i.split("-")[0] for i in r["ids"]} for r in got]
    assert shards == [{"s0", "s3"}, {"s1", "s2"}]  # each host its own files
    short = sum(s[0] == 12 for s in got[0]["shapes"])
    assert len(got[0]["ids"]) == 6 * short and len(got[1]["ids"]) == 2 * (12 - short)


def test_clip_lengths_are_read_once_then_cached(tmp_path, monkeypatch):
    path = write_clips(tmp_path / "d.tfrecord", DURATIONS)
    cache = str(tmp_path / "cache")
    first = pipeline.train_dataset([path], feat(), 0, seed=3, bucketing=BUCKETS, cache_dir=cache)

    def no_reading(*a, **k):
        raise AssertionError("a record was read for its length although it was cached")

    monkeypatch.setattr(buckets.schema, "example_to_clip", no_reading)
    again = pipeline.train_dataset([path], feat(), 0, seed=3, bucketing=BUCKETS, cache_dir=cache)
    assert again.spec.buckets == first.spec.buckets
    assert [c.rows.tolist() for c in again.spec.corpora] == [c.rows.tolist() for c in first.spec.corpora]
