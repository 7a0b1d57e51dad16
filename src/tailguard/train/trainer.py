"""The training loop run by every worker of a group (one process per rank).

Per step: take this rank's rows of the global batch (counts planned, see ``batching``), set
the learning rate from the step (when a schedule varies it), forward, per-row loss weighted to
the global mean, backward (DDP averages / FSDP reduce-scatters), optimiser step. Evaluation,
time-to-target, checkpoints and the final export hang off step boundaries, and the RNGs are
seeded once per attempt and checkpointed per rank (``tailguard.train.rng``), so a restart from
a checkpoint replays exactly the same computation.

The loop is the framework's whole per-step cost over a hand-written one (``benchmarks/
train_tta.py`` holds it under 10% for a 64-128-10 MLP, ~450 µs a step): the counters are
plain ints (the frozen :class:`TrainerState` is built only at checkpoints, evaluations and the
end), a batch is three tensor views into a shuffle window collated once, and nothing that is
constant (device moves on CPU, a constant learning rate, the output width) is redone per step.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from tailguard.tensors import TensorSpec
from tailguard.train.batching import (
    Batch,
    BatchTaker,
    Collator,
    StepPlan,
    per_rank_batch,
    resolve_columns,
)
from tailguard.train.builtin_models import build_module
from tailguard.train.checkpoint import CheckpointInfo, CheckpointStore, TrainerState
from tailguard.train.export import export_artifact
from tailguard.train.heartbeat import Heartbeat
from tailguard.train.job import TrainJob
from tailguard.train.metrics import MetricsWriter, ProgressBar, read_events
from tailguard.train.objectives import (
    MetricSums,
    build_optimizer,
    label_dtype,
    lr_factor,
    mean_loss,
    per_row_loss,
    set_lr,
    step_loss,
    target_met,
)
from tailguard.train.parallel import apply_parallel, rank_memory
from tailguard.train.pipeline import make_loss_fn, pack_target
from tailguard.train.rng import RngState, seed_all
from tailguard.train.runs import RunPaths, read_json, write_json

# Test hooks (never set in production): pace steps so a test can act mid-run, and inject a
# worker fault, e.g. {"rank": 1, "step": 5, "attempt": 0, "action": "exit"}.
STEP_DELAY_ENV = "TAILGUARD_TRAIN_STEP_DELAY_S"
FAULT_ENV = "TAILGUARD_TRAIN_FAULT"
EVAL_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class WorkerContext:
    run: RunPaths
    attempt: int
    rank: int
    world_size: int
    progress: bool = False


def _load_factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _dataset_columns(ds: Any) -> list[str]:
    for attr in ("columns", "column_names"):
        value = getattr(ds, attr, None)
        if isinstance(value, list | tuple) and value:
            return [str(c) for c in value]
    schema = getattr(ds, "schema", None)
    names = getattr(schema, "names", None)
    if isinstance(names, list | tuple) and names:
        return [str(c) for c in names]
    ds.load_state_dict({"epoch": 0, "consumed": 0})
    return [str(c) for c in next(iter(ds))]


def _select_device(job: TrainJob, rank: int) -> torch.device:
    use_cuda = job.device == "cuda" or (job.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        index = rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


class Trainer:
    """Owns one rank's model, optimiser, data cursors and checkpoints for one attempt."""

    def __init__(self, job: TrainJob, ctx: WorkerContext, heartbeat: Heartbeat) -> None:
        self.job = job
        self.ctx = ctx
        self.hb = heartbeat
        self.rank = ctx.rank
        self.ws = ctx.world_size
        self.device = _select_device(job, ctx.rank)
        self.metrics = MetricsWriter(ctx.run.metrics) if ctx.rank == 0 else None
        self.store = CheckpointStore(ctx.run.checkpoints, keep=job.keep_checkpoints)
        self.step_delay_s = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        fault = os.environ.get(FAULT_ENV)
        self.fault: dict[str, Any] | None = json.loads(fault) if fault else None
        self._data_start: float | None = None
        self._last_eval_step: int | None = None
        self._eval_cache: list[Batch] | None = None
        self._output_width = 0

    # -- setup -------------------------------------------------------------------------
    def _open(self, path: Any, batch: int, *, shuffle: bool, columns: list[str] | None) -> Any:
        factory = _load_factory(self.job.data.dataset_factory)
        # the sampler's rank and size are the data-parallel coordinate: every rank of one
        # TP group and one pipeline reads the same rows
        return factory(path, batch_size=batch, seed=self.job.seed, shuffle=shuffle,
                       rank=self.dp_rank, world_size=self.dp, columns=columns)

    def setup(self) -> None:
        job = self.job
        if job.threads_per_worker or self.device.type == "cpu":
            cores = os.cpu_count() or 1
            torch.set_num_threads(job.threads_per_worker or max(1, cores // self.ws))
        self.layout = job.parallel.layout(self.ws)
        coords = self.layout.coords(self.rank)
        self.dp, self.dp_rank = self.layout.dp, coords.dp
        self.owns_loss = self.layout.owns_loss(self.rank)
        b = per_rank_batch(job.global_batch_size, self.dp, job.batch_size)
        if self.layout.pp > 1 and b % job.parallel.n_microbatches:
            raise RuntimeError(f"per-replica batch {b} is not a multiple of "
                               f"{job.parallel.n_microbatches} microbatches")
        probe = self._open(job.data.train, b, shuffle=True, columns=None)
        self.features = resolve_columns(job.data.features, _dataset_columns(probe))
        columns = [*self.features, job.data.label]
        self.train_ds = self._open(job.data.train, b, shuffle=True, columns=columns)
        self.plan = StepPlan(int(self.train_ds.num_samples), b, self.dp)
        if self.plan.num_samples == 0:
            raise RuntimeError(f"training dataset {job.data.train} is empty")
        self.eval_ds = None
        if job.data.eval is not None:
            # a pipeline's stage buffers are sized by the first step: evaluate in its shape
            eb = b if self.layout.pp > 1 else (job.eval_batch_size or b)
            self.eval_ds = self._open(job.data.eval, eb, shuffle=False, columns=columns)
            self.eval_plan = StepPlan(int(self.eval_ds.num_samples), eb, self.dp)
        self.total_steps = job.max_steps or (job.epochs or 1) * self.plan.steps_per_epoch
        self.collate = Collator(self.features, job.data.label,
                                label_dtype=label_dtype(job.objective.loss))
        torch.manual_seed(job.seed)  # identical initial weights on every rank and attempt
        module = build_module(job.model.builder, dict(job.model.kwargs))
        self._step_rows = 0  # the current step's global rows, read by the pipeline's loss
        self.par = apply_parallel(module, job.parallel, self.device, loss_fn=make_loss_fn(
            job.objective.loss, self.dp, lambda: self._step_rows))
        self.model, self.pipe = self.par.model, self.par.pipeline
        self.optimizer = build_optimizer(job.optimizer, self.model.parameters())
        latest = self.store.latest()
        self.resumed_from: CheckpointInfo | None = latest
        rng: RngState | None = None
        if latest is not None:
            self.state = self.store.load(latest, self.model, self.optimizer)
            if (self.state.world_size, self.state.layout) == (self.ws, self.layout.name()):
                # the same ranks in the same places: continue their streams
                rng = self.store.load_rng(latest, self.rank)
        else:
            identity = {k: v for k, v in self.train_ds.state_dict(0).items()
                        if k not in ("epoch", "consumed")}
            self.state = TrainerState(config_hash=job.config_hash(), data=identity)
        self.state = replace(self.state, world_size=self.ws, global_batch=self.plan.global_batch,
                             layout=self.layout.name())
        self.last_checkpoint = latest
        self._cuda = self.device.type == "cuda"
        if rng is not None:
            rng.restore(cuda=self._cuda)
        else:  # a fresh run, or other ranks than the checkpoint's: new streams
            # one stream per replica and stage, shared by its TP ranks: dropout on the
            # activations they replicate must draw the same mask on each
            seed_all(job.seed, self.state.step, self.rank // self.layout.tp, cuda=self._cuda)
        self._loss_name = job.objective.loss
        self._full_rows, self._full_global_rows = self.plan.per_rank_batch, self.plan.global_batch
        schedule = job.schedule
        self._lr_varies = schedule.name == "cosine" or schedule.warmup_steps > 0
        set_lr(self.optimizer, job.optimizer.lr,
               lr_factor(schedule, self.state.step, self.total_steps))

    # -- collectives -------------------------------------------------------------------
    def _all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if dist.is_initialized() and self.ws > 1:
            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
        return tensor.cpu()

    # -- one step ----------------------------------------------------------------------
    def _short(self, epoch: int) -> RuntimeError:
        return RuntimeError(f"rank {self.rank}: dataset yielded fewer rows than the plan "
                            f"expects (epoch {epoch})")

    def _take(self, iterator: Any, rows: int, epoch: int) -> list[dict[str, Any]]:
        samples = []
        for _ in range(rows):
            try:
                samples.append(next(iterator))
            except StopIteration:
                raise self._short(epoch) from None
        return samples

    def _batches(self, dataset: Any, epoch: int = 0) -> Callable[[int], Batch]:
        """``take(n)`` -> this rank's next batch of ``n`` rows. Collates each column chunk
        once and slices it when the dataset offers chunks (``StreamingDataset.iter_columns``),
        else collates samples."""
        if not hasattr(dataset, "iter_columns"):
            iterator = iter(dataset)
            return lambda n: self.collate(self._take(iterator, n, epoch))
        label, from_columns = self.job.data.label, self.collate.from_columns
        taker = BatchTaker(from_columns(columns) for columns in dataset.iter_columns()
                           if len(columns[label]))

        def take(n: int) -> Batch:
            if n == 0:
                return self.collate([])
            batch = taker.take(n)
            if batch is None:
                raise self._short(epoch)
            return batch

        return take

    def _forward(self, batch: Batch) -> torch.Tensor:
        features = batch.features
        inputs = (features.to(self.device) if self._cuda and isinstance(features, torch.Tensor)
                  else features)
        outputs: torch.Tensor = self.model(inputs)
        if not self._output_width:  # for the exported artifact's output spec
            self._output_width = int(outputs.reshape(outputs.shape[0], -1).shape[1])
        return outputs

    def _train_step(self, batch: Batch, rows: int, global_rows: int, step: int) -> torch.Tensor:
        """Optimiser step number ``step + 1`` (``step`` done before it) on this rank's ``rows``
        of ``global_rows``. Returns the loss (not detached: that is one more op per step, done
        only where the loss is read)."""
        if self._lr_varies:
            set_lr(self.optimizer, self.job.optimizer.lr,
                   lr_factor(self.job.schedule, step, self.total_steps))
        if self.pipe is not None:
            return self._pipe_step(batch, global_rows)
        outputs = self._forward(batch)
        labels, weights = batch.labels, batch.weights
        if self._cuda:
            labels, weights = labels.to(self.device), weights.to(self.device)
        if rows == self._full_rows and global_rows == self._full_global_rows:
            # every rank holds a full batch of real rows: the weighted global share below is
            # exactly this rank's mean, so skip the per-row weights (3 fewer autograd ops)
            loss = mean_loss(self._loss_name, outputs, labels)
        else:
            rows_loss = per_row_loss(self._loss_name, outputs, labels)
            loss = step_loss(rows_loss, weights, global_rows=global_rows, world_size=self.dp)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def _pipe_step(self, batch: Batch, global_rows: int) -> torch.Tensor:
        assert self.pipe is not None
        features, target = pack_target(batch, self._full_rows)
        if self._cuda:
            features, target = features.to(self.device), target.to(self.device)
        self._step_rows = global_rows
        self.optimizer.zero_grad(set_to_none=True)
        outputs, loss = self.pipe.train_step(features, target)
        self.optimizer.step()
        if outputs is not None and not self._output_width:
            self._output_width = int(outputs.reshape(outputs.shape[0], -1).shape[1])
        return loss if loss is not None else torch.zeros((), device=self.device)

    def _eval_outputs(self, batch: Batch) -> torch.Tensor | None:
        """This rank's outputs for ``batch``; ``None`` where the pipeline's last stage has
        them. Pipeline batches are padded to the step's shape, the padding cut off here."""
        if self.pipe is None:
            return self._forward(batch)
        features, target = pack_target(batch, self._full_rows)
        if self._cuda:
            features, target = features.to(self.device), target.to(self.device)
        outputs = self.pipe.evaluate(features, target)
        return None if outputs is None else outputs[: batch.rows]

    # -- evaluation --------------------------------------------------------------------
    def _eval_batches(self) -> Iterator[Batch]:
        """This rank's held-out batches; kept in memory after the first pass when small (the
        order is fixed, so re-reading and re-collating them every evaluation is waste)."""
        if self._eval_cache is not None:
            yield from self._eval_cache
            return
        assert self.eval_ds is not None
        self.eval_ds.load_state_dict({"epoch": 0, "consumed": 0})
        take = self._batches(self.eval_ds)
        kept: list[Batch] | None = []
        size, consumed = 0, 0
        for _ in range(self.eval_plan.steps_left(0)):
            batch = take(self.eval_plan.rank_rows(consumed, self.dp_rank))
            consumed += self.eval_plan.global_rows(consumed)
            if kept is not None:
                f = batch.features
                size += f.numel() * 4 if isinstance(f, torch.Tensor) else sum(map(len, f))
                if size <= EVAL_CACHE_BYTES:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        self._eval_cache = kept

    def evaluate(self) -> dict[str, float]:
        sums = MetricSums()
        self.model.eval()
        with torch.no_grad():
            for batch in self._eval_batches():
                outputs = self._eval_outputs(batch)
                if outputs is not None and self.owns_loss:  # once per replica
                    sums.add(self.job.objective.loss, outputs.cpu(), batch.labels,
                             batch.weights if batch.placeholder else None)
                self.hb.beat()
        self.model.train()
        return sums.result(self.job.objective.loss, self._all_sum(sums.totals()))

    # -- bookkeeping -------------------------------------------------------------------
    def _emit(self, event: str, **fields: Any) -> None:
        if self.metrics is not None:
            self.metrics.write(event, attempt=self.ctx.attempt, **fields)

    def _touch_data_clock(self) -> None:
        """Time-to-target runs from the first data touch of the run (first attempt)."""
        if self._data_start is not None:
            return
        clock = self.ctx.run.clock
        if clock.is_file():
            self._data_start = float(read_json(clock)["data_start_unix"])
        else:
            self._data_start = time.time()
            if self.rank == 0:
                write_json(clock, {"data_start_unix": self._data_start})

    def _checkpoint(self) -> None:
        started = time.perf_counter()
        rng = RngState.capture(cuda=self._cuda)
        with self.hb.keepalive():
            info = self.store.save(self.model, self.optimizer, self.state, rank=self.rank,
                                   rng=rng)
        self.last_checkpoint = info
        self._emit("checkpoint", step=info.step, path=str(info.path),
                   save_s=time.perf_counter() - started)

    def _report_memory(self, step: int) -> None:
        """Every rank's parameter, gradient and optimiser bytes after its first step (the
        optimiser state exists by then), as one ``memory`` event."""
        mine = {"rank": self.rank, **vars(self.par.coords), **rank_memory(self.model,
                                                                          self.optimizer)}
        ranks: list[Any] = [mine]
        if dist.is_initialized() and self.ws > 1:
            ranks = [None] * self.ws
            dist.all_gather_object(ranks, mine)
        self._emit("memory", step=step, layout=self.layout.name(), ranks=ranks)

    def _full_weights(self) -> dict[str, torch.Tensor]:
        """The whole model's plain tensors on rank 0 (empty elsewhere). Collective: sharded
        parameters are gathered; under a pipeline each stage's first replica sends its
        stage's tensors to rank 0."""
        if self.layout.pp == 1:  # every rank gathers, rank 0 keeps
            return dict(get_model_state_dict(  # type: ignore[arg-type]
                self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)))
        stage: dict[str, Any] = dict(get_model_state_dict(
            self.model, options=StateDictOptions(full_state_dict=True)))
        coords = self.par.coords
        sent = ({k: v.detach().cpu() for k, v in stage.items()}
                if coords.dp == 0 and coords.tp == 0 else {})
        parts: list[Any] = [None] * self.ws if self.rank == 0 else []
        dist.gather_object(sent, parts if self.rank == 0 else None, dst=0)
        merged: dict[str, torch.Tensor] = {}
        for part in parts:
            merged.update(part or {})
        return merged

    def _maybe_fault(self, step: int) -> None:
        f = self.fault
        if (f and f.get("rank") == self.rank and f.get("step") == step
                and f.get("attempt", self.ctx.attempt) == self.ctx.attempt):
            os._exit(int(f.get("code", 3)))

    def _eval_and_target(self) -> tuple[dict[str, float], bool]:
        """Evaluate; record the target the first time it is met. Returns (metrics, stop)."""
        started = time.perf_counter()
        # no keepalive thread here (starting one per evaluation cost more than a small eval):
        # evaluate() beats after every batch, like the training loop after every step
        result = self.evaluate()
        self._last_eval_step = self.state.step
        self._emit("eval", step=self.state.step, metrics=result,
                   eval_s=time.perf_counter() - started)
        target = self.job.target
        if target is None:
            return result, False
        met = target_met(target.metric, result[target.metric.value], target.value)
        if met and self.state.target_reached_step is None:
            self.state = replace(self.state, target_reached_step=self.state.step)
            assert self._data_start is not None
            self._emit("target_reached", step=self.state.step, metric=target.metric.value,
                       value=result[target.metric.value], target=target.value,
                       tta_s=time.time() - self._data_start)
        return result, met and target.stop

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        job, plan = self.job, self.plan
        start_step = self.state.step
        self._emit("start", world_size=self.ws, per_rank_batch=plan.per_rank_batch,
                   global_batch=plan.global_batch,
                   total_steps=self.total_steps, resumed_from_step=start_step if
                   self.resumed_from else None, parallel=job.parallel.describe(),
                   layout=self.layout.name(), device=str(self.device))
        if self.resumed_from is not None and self.state.config_hash != job.config_hash():
            self._emit("warning", message="job config changed since the checkpoint was written")
        bar = ProgressBar(self.total_steps, start_step=start_step,
                          enabled=self.ctx.progress and self.rank == 0)
        eval_metrics: dict[str, float] = {}
        last_loss = float("nan")
        stop = self.state.target_reached_step is not None and bool(job.target and job.target.stop)
        # plain ints in the loop; the frozen TrainerState is rebuilt only where it is read
        st = self.state
        step, epoch, consumed, seen = st.step, st.epoch, st.consumed, st.samples_seen
        total, num_samples, rank = self.total_steps, plan.num_samples, self.dp_rank
        eval_every = job.eval_every_steps if self.eval_ds is not None else 0
        log_every, save_every = job.log_every_steps, job.checkpoint_every_steps
        train_step, beat, fault = self._train_step, self.hb.beat, self.fault is not None
        tick = time.perf_counter()
        try:
            while step < total and not stop:
                if consumed >= num_samples:
                    epoch, consumed = epoch + 1, 0
                self.train_ds.load_state_dict({**self.state.data, "epoch": epoch,
                                               "consumed": consumed})
                next_batch = self._batches(self.train_ds, epoch)
                self._touch_data_clock()
                while consumed < num_samples and step < total and not stop:
                    rows = plan.global_rows(consumed)
                    mine = plan.rank_rows(consumed, rank)
                    waited = time.perf_counter()
                    batch = next_batch(mine)
                    waited = time.perf_counter() - waited  # tailguard_train_data_wait_share
                    loss = train_step(batch, mine, rows, step)
                    step, consumed, seen = step + 1, consumed + rows, seen + rows
                    if step == start_step + 1:
                        self.hb.stop_keepalive(all_levels=True)  # start-up is over
                        self._report_memory(step)
                    beat()
                    if step % log_every == 0 or step == total:
                        share = loss.detach().reshape(1) if self.owns_loss else torch.zeros(1)
                        last_loss = float(self._all_sum(share)[0]) / self.dp
                        now = time.perf_counter()
                        rate = rows / max(1e-9, now - tick)
                        self._emit("step", step=step, epoch=epoch, loss=last_loss,
                                   lr=self.optimizer.param_groups[0]["lr"], samples_per_s=rate,
                                   step_s=now - tick, data_s=waited)
                        shown = self.job.objective.metric.value
                        held_out = (f" {shown} {eval_metrics[shown]:.4f}"
                                    if shown in eval_metrics else "")
                        bar.update(step, f"loss {last_loss:.4f}{held_out}")
                    evaluate = eval_every and step % eval_every == 0
                    if evaluate or step % save_every == 0:
                        self.state = replace(self.state, step=step, epoch=epoch,
                                             consumed=consumed, samples_seen=seen)
                        if evaluate:
                            eval_metrics, stop = self._eval_and_target()
                        if step % save_every == 0 or stop:
                            self._checkpoint()
                    if fault:
                        self._maybe_fault(step)
                    if self.step_delay_s:
                        time.sleep(self.step_delay_s)
                    tick = time.perf_counter()
        finally:
            self.state = replace(self.state, step=step, epoch=epoch, consumed=consumed,
                                 samples_seen=seen)
            bar.close()
        return self._finish(eval_metrics, last_loss)

    def _finish(self, eval_metrics: dict[str, float], last_loss: float) -> dict[str, float]:
        self.hb.stop_keepalive(all_levels=True)
        step = self.state.step
        if self.eval_ds is not None and self._last_eval_step != step:
            eval_metrics, _ = self._eval_and_target()
        if self.last_checkpoint is None or self.last_checkpoint.step != step:
            self._checkpoint()
        if self.layout.pp > 1:  # only the last stage saw the outputs
            width = torch.tensor([self._output_width], dtype=torch.int64, device=self.device)
            dist.all_reduce(width, op=dist.ReduceOp.MAX)
            self._output_width = int(width[0].item())
        with self.hb.keepalive():
            weights = self._full_weights()
        metrics = {("eval_loss" if k == "loss" else k): v for k, v in eval_metrics.items()
                   if k != "rows"}
        metrics.update(train_loss=last_loss, steps=float(step))
        if self.rank == 0:
            reached = [e for e in read_events(self.ctx.run.metrics)
                       if e["event"] == "target_reached"]
            if reached:
                metrics["tta_s"] = float(reached[0]["tta_s"])
            with self.hb.keepalive():
                self._export(weights, metrics)
        return metrics

    def _export(self, weights: dict[str, torch.Tensor], metrics: dict[str, float]) -> None:
        job = self.job
        probe = self.collate([]).features  # one placeholder row: the input's type and width
        input_spec = (TensorSpec(job.data.input_name, "BYTES", (-1,))
                      if isinstance(probe, list)
                      else TensorSpec(job.data.input_name, "FP32", (-1, int(probe.shape[1]))))
        manifest = export_artifact(
            self.ctx.run.artifact, job=job, run_id=self.ctx.run.run_id, weights=weights,
            input_spec=input_spec, output_width=self._output_width, metrics=metrics,
            checkpoint=self.last_checkpoint.path if self.last_checkpoint else None,
            step=self.state.step, world_size=self.ws)
        self._emit("finished", step=self.state.step, metrics=metrics,
                   artifact=str(self.ctx.run.artifact), name=manifest.name,
                   version=manifest.version)
