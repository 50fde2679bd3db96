"""The pre-training loop, top to bottom: data, model, sharded state, step, loop, probe.

One story in banner-commented sections (after big_vision's train.py). What is compiled (the
state's init, the train step, the embedding) lives in `train/step.py`, built from the config
alone; this file feeds it data, checkpoints it and reports on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time

import jax
import ml_collections
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import batcher, pipeline, storage, text_fields
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import checkpoint, flops, log as log_lib, preemption, step as step_lib
from strongaudio_jax.train import run_config


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) pre-training in `workdir`, then probes the frozen encoder."""
    storage.makedirs(workdir)  # a local directory or a bucket URL (gs://, s3://)
    logger = log_lib.Logger(workdir)
    run_config.record(cfg, workdir, logger)  # <workdir>/config.json: the work dir describes itself
    logger.info(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, "
                f"processes: {jax.process_count()}")

    # ---------------------------------------------------------------- Mesh and data
    mesh = mesh_lib.make_mesh(cfg.mesh)
    corpora = pipeline.mixture(cfg.data)  # {name: (files, weight)}: data.mix or data.train_files
    train_files = [f for files, _ in corpora.values() for f in files]
    if cfg.data.vocab_file:  # a fixed vocabulary (e.g. a released UTS label_K.json)
        try:
            vocab = pipeline.load_vocabulary(cfg.data.vocab_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"data.vocab_file: {e}") from e
    else:  # the training corpus's own tags (one pass over the records)
        bad = pipeline.BadData(skip=cfg.data.skip_bad)
        vocab = pipeline.tag_vocabulary(train_files, cfg.data.vocab_min_count,
                                        verify_crc=cfg.data.verify_crc, bad=bad)
        if bad.counts:
            logger.info(f"vocabulary pass: {bad.summary()}")
    if not vocab:
        raise ConfigError(f"the training files ({len(train_files)}, e.g. {train_files[0]}) hold "
                          f"no tag seen >= {cfg.data.vocab_min_count} times "
                          "(data.vocab_min_count); check data.train_files, or give a "
                          "vocabulary as data.vocab_file")
    if jax.process_index() == 0:
        storage.write_text(storage.join(workdir, "vocab.json"),
                           json.dumps({str(i): t for i, t in enumerate(vocab)}, indent=1))
    if cfg.frontend.get("stats_file") and jax.process_index() == 0:  # evaluation reads this copy
        storage.copy(cfg.frontend.stats_file, storage.join(workdir, "frontend_stats.json"))
    program = step_lib.build(cfg, len(vocab), vocab)  # the pure functions (train/step.py)
    dp = _check_batch_splits(cfg.data.batch_size, mesh, program.rules)
    # data.batching='duration_buckets': whole clips, one batch shape per bucket (data/buckets.py)
    bucketing = pipeline.bucketing_from_config(cfg.data, dp * cfg.train.grad_accum)
    extra = text_fields.from_config(cfg, program.text_fields)  # text the objectives read
    if extra is not None and jax.process_index() == 0:  # text objectives' vocabulary
        storage.write_text(storage.join(workdir, "text_vocab.txt"),
                           "".join(t + "\n" for t in extra.tokenizer.vocab))
    tag_index: dict[str, int] = {}
    for i, t in enumerate(vocab):  # a tag listed twice (released UTS files have some) trains
        if t in tag_index:  # its first output only; say so rather than leave one dead silently
            logger.info(f"vocabulary: {t!r} is listed at {tag_index[t]} and {i}; "
                        f"output {i} gets no targets")
        tag_index.setdefault(t, i)
    featurizer = pipeline.featurizer_from_config(cfg, tag_index, train=True, extra=extra)
    dataset = pipeline.train_dataset(corpora, featurizer, cfg.data.batch_size, cfg.seed,
                                     cfg.data.verify_crc, cfg.data.workers,
                                     skip_bad=cfg.data.skip_bad, bucketing=bucketing)
    if dataset.spec.buckets is not None:
        logger.info(f"data: whole clips in duration buckets (length x global batch): "
                    f"{dataset.spec.buckets.describe()}")
    for damage in pipeline.damaged_at_indexing(dataset):  # only with data.skip_bad
        logger.info(f"data.skip_bad: skipped while indexing (counted in skipped_records): "
                    f"{damage}")
    scanned = pipeline.remote_shards_scanned(dataset)
    if scanned:
        logger.info(f"data: {len(scanned)} remote shard(s) have no <shard>.idx, so every host "
                    f"read them whole to index them (e.g. {scanned[0]}); `strongaudio index "
                    "<globs>` once makes this one small read per shard")
    data_iter = iter(dataset)
    bad_logged = data_iter.bad_counts()
    outside_logged = False  # tags of training records that the vocabulary lacks (said once)
    logger.info(f"train: {len(train_files)} files, vocabulary of {len(vocab)} tags, "
                f"global batch {'by duration bucket' if bucketing else cfg.data.batch_size}, "
                f"mesh {dict(mesh.shape)}")

    # ---------------------------------------------------------------- Model, objectives, step
    init, train_step, state_shardings = program.compile(mesh)
    state = init(jax.random.key(cfg.seed))
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logger.info(f"model: {cfg.model.name}-{cfg.model.get('size', '')}, {n_params / 1e6:.2f}M params")

    mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
    if mngr.latest_step() is not None:
        state, data_iter = checkpoint.restore(
            mngr, mngr.latest_step(), checkpoint.abstract_like(state, state_shardings), data_iter)
        logger.info(f"resumed from step {int(state.step)} in {mngr.directory}")
    skip_nonfinite = cfg.train.skip_nonfinite

    # ---------------------------------------------------------------- Evaluation
    from strongaudio_jax.eval import evaluators as evaluators_lib

    # config.evals (eval/evaluators.py), else the probe block's and the tag head's evaluators.
    evals = evaluators_lib.from_config(evaluators_lib.Context(
        cfg, program, featurizer, mesh, train_files, logger))

    def evaluate(state: step_lib.TrainState, step: int | None = None) -> tuple[list, dict]:
        """The evaluators due at `step` (all of them when None, at the end) on the frozen
        model (its EMA when kept); keeps the best checkpoint."""
        all_params = state.ema_params or state.params
        scores, results = {}, []
        for ev in evals:
            if step is None or evaluators_lib.due(ev.every, cfg, step):
                scores.update(ev.run(all_params, int(state.step)))
                results += getattr(ev, "results", [])
        if best_mngr and best_metric in scores:
            checkpoint.save_best(best_mngr, int(state.step), state, scores)
        return results, scores

    best_metric = cfg.train.best_metric
    best_mngr = checkpoint.best_manager(workdir, best_metric) if best_metric else None

    # ---------------------------------------------------------------- Loop
    start = int(state.step)
    total = cfg.train.steps
    pending, history = [], []
    skipped = 0
    t_log, data_wait = time.perf_counter(), 0.0
    compiled, step_flops = {}, {}  # per batch shape (one per duration bucket, else one)
    flops_done, samples_done = 0.0, 0

    def drain():
        """Fetches pending metrics; stops on a non-finite loss before anything is saved."""
        nonlocal pending, skipped
        for s, m in jax.device_get(pending):
            if m["nonfinite"] and not skip_nonfinite:
                kept = _finish_saves(mngr, logger)  # the step named is committed, not in flight
                raise NonFiniteLossError(
                    f"loss is {m['loss']} (gradient norm {m['grad_norm']}) at step {s}; last good "
                    f"checkpoint: {'step ' + str(kept) if kept is not None else 'none'} in "
                    f"{mngr.directory}. Lower optimizer.lr, check the data, or set "
                    f"train.skip_nonfinite=True to skip such updates (they are counted).")
            skipped += int(m["nonfinite"])
            history.append({"step": s, **{k: float(v) for k, v in m.items()}})
        n, pending = len(pending), []
        return n

    profile = tuple(cfg.train.profile_steps)  # (first, last): trace steps first+1 .. last
    stop = preemption.StopWatcher()
    step = start
    try:
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            batch = mesh_lib.global_batch(next(data_iter), mesh, program.rules)
            data_wait += time.perf_counter() - t0
            shape = batch["waveform"].shape
            if shape not in compiled:  # compile once per batch shape, and count its FLOPs
                compiled[shape] = train_step.lower(state, batch).compile()
                step_flops[shape] = program.model_flops(state, batch) / jax.device_count()
            flops_done += step_flops[shape]
            samples_done += shape[0]
            state, metrics = compiled[shape](state, batch)
            pending.append((step, metrics))
            stopping = stop.should_stop(step)

            if step % cfg.train.log_every == 0 or step == total or stopping:
                drain()
                elapsed = time.perf_counter() - t_log
                tflops = flops_done / elapsed / 1e12  # per device
                bad, outside = _pod_data_counts(data_iter)  # every process takes part
                if bad != bad_logged:
                    logger.info(f"data: records skipped (data.skip_bad) or resampled "
                                f"(data.resample) so far {bad}, e.g. "
                                f"{data_iter.bad_messages[-1] if data_iter.bad_messages else ''}")
                    bad_logged = bad
                if outside.occurrences and not outside_logged:
                    logger.info(_outside_vocab_message(outside, "so far"))
                    outside_logged = True
                logger.metrics(step, total, history[-1], samples_per_s=samples_done / elapsed,
                               data_wait=data_wait / elapsed, skipped_updates=skipped,
                               skipped_records=sum(v for k, v in bad.items()
                                                   if k not in batcher.NOT_SKIPPED),
                               resampled_records=bad.get("resampled", 0),
                               tags_outside_vocab=outside.occurrences,
                               tflops_per_device=tflops,
                               mfu=tflops / peak if (peak := flops.peak_tflops(jax.devices()[0]))
                               else None)
                t_log, data_wait = time.perf_counter(), 0.0
                flops_done, samples_done = 0.0, 0

            if step % cfg.train.checkpoint_every == 0 or step == total or stopping:
                drain()
                checkpoint.save(mngr, step, state, data_iter)
            if any(evaluators_lib.due(ev.every, cfg, step) for ev in evals):
                evaluate(state, step)
            if step == profile[0]:  # jax.profiler writes local files: a bucket gets a copy
                profile_dir = (tempfile.mkdtemp(prefix="strongaudio_profile_")
                               if storage.is_url(workdir) else os.path.join(workdir, "profile"))
                jax.profiler.start_trace(profile_dir)
            if step == profile[1]:
                jax.profiler.stop_trace()
                if storage.is_url(workdir):
                    storage.upload_tree(profile_dir, storage.join(workdir, "profile"))
                    shutil.rmtree(profile_dir, ignore_errors=True)
                logger.info(f"profile of steps {profile[0] + 1}-{profile[1]} in "
                            f"{storage.join(workdir, 'profile')}")
            if stopping:
                mngr.wait_until_finished()
                data_iter.close()  # workers ignore the signal; they end once the save is done
                logger.info(f"{stop.reason} received: saved step {step} in {mngr.directory}; "
                            "run the same command again to resume")
                logger.close()
                return {"history": history, "probe": [], "vocab": vocab, "state": state,
                        "stopped_at": step}
    except Exception as e:  # a handled error (bad data, NaN loss, ...): keep what was saved
        if isinstance(e, NonFiniteLossError):
            pass  # (that one waited, on every process, and names the step)
        elif jax.process_count() == 1:
            kept = _finish_saves(mngr, logger)
            logger.info(f"stopped by an error at step {step}; last complete "
                        f"checkpoint: {'step ' + str(kept) if kept is not None else 'none'} in "
                        f"{mngr.directory}")
        else:  # a save is collective: the other processes may never finish this one with us
            print(f"[strongaudio] process {jax.process_index()} stopped by an error at step "
                  f"{step}; a save in flight is not waited for (the others may not reach it): "
                  "the next start resumes from the last complete checkpoint", flush=True)
            raise
        if best_mngr:
            _finish_saves(best_mngr, logger)
        raise
    finally:
        stop.close()
        data_iter.close()
    mngr.wait_until_finished()
    if skipped:
        logger.info(f"{skipped} update(s) skipped because the loss or gradient was not finite")
    _, outside = _pod_data_counts(data_iter)
    if outside.occurrences:
        logger.info(_outside_vocab_message(outside, "in all"))
    logger.info(f"checkpoint: {mngr.directory} (step {mngr.latest_step()})")

    # ---------------------------------------------------------------- Final probe
    results, scores = evaluate(state)
    if best_mngr:
        best_mngr.wait_until_finished()
        logger.info(f"best {best_metric}: step {best_mngr.best_step()} in {best_mngr.directory}")
    logger.close()
    return {"history": history, "probe": results, "scores": scores, "vocab": vocab,
            "state": state}


def _check_batch_splits(batch_size: int, mesh, rules) -> int:
    """The global batch must split evenly over the data-parallel devices; returns their number."""
    spec = mesh_lib.batch_sharding(mesh, 1, rules).spec[0]
    axes = [a for a in (spec if isinstance(spec, tuple) else (spec,)) if a]
    n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if batch_size % n:
        raise ConfigError(f"data.batch_size={batch_size} does not split over the {n} "
                          f"data-parallel devices (mesh axes {', '.join(axes)}); use a "
                          f"multiple of {n}")
    return n


def _finish_saves(mngr, logger) -> int | None:
    """Waits for the checkpoint saves still being written (they are asynchronous and trail the
    step) and returns the last complete step; says so when a save could not complete."""
    try:
        mngr.wait_until_finished()
    except Exception as e:  # noqa: BLE001 (the error that ends the run is the one to show)
        mngr.reload()  # what is on disk, not what was started
        logger.info(f"checkpoint: a save in {mngr.directory} did not complete "
                    f"({type(e).__name__}: {e}); the last complete one is step "
                    f"{mngr.latest_step()}")
    return mngr.latest_step()


def _pod_data_counts(data_iter) -> tuple[dict, batcher.OutsideVocab]:
    """Records skipped by reason (data.skip_bad) and tags outside the vocabulary, summed over
    all processes: each host counts only its own share of the data. The examples are this
    host's. A collective: every process calls it at the same steps."""
    bad, outside = data_iter.bad_counts(), data_iter.outside_vocab()
    if jax.process_count() == 1:
        return bad, outside
    from jax.experimental import multihost_utils

    counts = [bad.get(r, 0) for r in batcher.BAD_REASONS] + [outside.occurrences, outside.records]
    words = np.array([[c >> 30, c & (2**30 - 1)] for c in counts], np.int32)  # int32 collectives
    summed = np.asarray(multihost_utils.process_allgather(words)).astype(np.int64).sum(0)
    total = [int(hi << 30) + int(lo) for hi, lo in summed]
    return ({r: c for r, c in zip(batcher.BAD_REASONS, total) if c},
            dataclasses.replace(outside, occurrences=total[-2], records=total[-1]))


def _outside_vocab_message(outside, when: str) -> str:
    # the counts are summed over the processes, the examples are this process's (maybe none)
    examples = ", ".join(repr(t) for t in outside.examples[:5])
    examples = f" (e.g. {examples})" if examples else ""
    return (f"vocabulary: {outside.occurrences} tag occurrence(s) in {outside.records} training "
            f"record(s) {when} are not in the vocabulary and train nothing{examples}; "
            "the vocabulary is data.vocab_file, or the corpus's tags seen at least "
            "data.vocab_min_count times. The running count is tags_outside_vocab in "
            "metrics.jsonl.")
