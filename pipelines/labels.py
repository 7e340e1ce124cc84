"""`c2fmae labels`: run the segmenters over an image folder, as a resumable Ray job.

    c2fmae labels --input DIR --output DIR [--profile NAME] [--config FILE] [--limit N]
                  [--address ADDR] [key=value ...]

The sorted image list is cut into shards (labeling/sharding.py); shards already in the
output are skipped, so rerunning the same command resumes an interrupted run. The pending
images flow through Ray Data: decode tasks (CPU) -> one actor pool per model (semantic,
then instances; each with its own concurrency, batch size and GPUs; the last one also
fuses its items into schema rows) -> this process, which writes each shard as soon as all
its rows are in and keeps manifest.json current. Ray Data streams the stages, so decoding
overlaps inference, and it restarts dead actors and retries their tasks; a bad image
becomes an error row, never a failed job, and so does an image that kills its model's
process every time (DeathLedger: after a death the batch is redone one image at a time,
and an image is given up after `max_model_deaths` deaths on its own). Without --address
a local Ray is started; with it the job joins a cluster (every node needs this package
installed, and --output must be on the driver's disk).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataset.schema import file_metadata, read_metadata
from dataset.shards import ShardInfo, open_shard, shard_path, write_manifest, write_shard
from labeling.backends.base import build_backend
from labeling.config import LabelingConfig, ModelConfig, Thresholds, resolve
from labeling.images import imagenet_classes, list_images
from labeling.sharding import (
    Shard,
    check_output,
    existing_infos,
    plan_shards,
    remove_stale_temp_files,
)
from labeling.stages import ModelStage, decode_items, fuse_items

log = logging.getLogger("c2fmae.labels")


def add_arguments(parser) -> None:
    parser.add_argument("--input", help="image folder (ImageNet layout or any folder of images); "
                        "with --profile demo, default: the bundled demo photos")
    parser.add_argument("--output", required=True, help="label directory to write (or resume)")
    parser.add_argument("--profile", help="preset in labeling/profiles: demo, imagenet, imagenet-fast")
    parser.add_argument("--config", help="YAML config file, applied after the profile")
    parser.add_argument("--limit", type=int, help="label only the first N images of the sorted list")
    parser.add_argument("--address", help="Ray cluster address (default: start Ray locally)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. shard_size=500 instances.batch_size=2")


# ---- Ray Data stages: thin wrappers moving items between the plain steps ----
# An item travels pickled in the `payload` column, except its decoded image: that goes in
# the `image` column, which Ray Data keeps as an Arrow tensor column (no pickling; the
# next stage reads it without a copy), while a pickled image would be copied into pickle
# bytes, into Arrow's binary column, out of it and out of pickle again. Items without an
# image (decode errors, after the last model) have an empty placeholder there.

_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


def _is_rgb(image: Any) -> bool:
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        and image.shape[2] == 3 and image.size > 0


def _unpack(batch: dict[str, np.ndarray]) -> list[dict]:
    items = [pickle.loads(p) for p in batch["payload"]]
    for item, image in zip(items, batch.get("image", ())):
        if image.size:  # read-only when read from Ray's object store: backends only read
            item["image"] = image
    return items


def _pack(items: list[dict], key: str = "idx", images: bool = True) -> dict[str, np.ndarray]:
    """Items -> a numpy batch: `idx`, pickled `payload`, and (if `images`) the `image` column."""
    payload, column = np.empty(len(items), dtype=object), np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        in_column = images and _is_rgb(item.get("image"))
        column[k] = item["image"] if in_column else _NO_IMAGE
        payload[k] = pickle.dumps({**item, "image": None} if in_column else item, protocol=5)
    batch = {"idx": np.asarray([it[key] for it in items], dtype=np.int64), "payload": payload}
    if images:
        batch["image"] = column
    return batch


def _decode_batch(batch: dict[str, np.ndarray], max_side, store_images) -> dict[str, np.ndarray]:
    records = [
        {"idx": int(i), "image_id": str(n), "path": str(p), "class_index": int(c)}
        for i, n, p, c in zip(batch["idx"], batch["image_id"], batch["path"], batch["class_index"])
    ]
    return _pack(decode_items(records, max_side, store_images))


class DeathLedger:
    """Which images were handed to a model process that died before finishing them (a Ray
    actor, shared by every model actor of a job). Ray Data restarts a dead actor and hands
    it the same batch again, without limit: an image that kills its process every time
    (a native crash, the host running out of memory) would stall the job. With the ledger
    a batch that comes back is redone one image at a time, and an image on which the
    process died `max_deaths` times on its own becomes an error row."""

    def __init__(self):
        self.started: set[tuple[str, int]] = set()  # in a batch that has not finished
        self.alone: dict[tuple[str, int], int] = {}  # attempts on its own not finished

    def begin(self, stage: str, idxs: list[int]) -> bool:
        """A batch starts; True if any of its images was in a batch that never finished."""
        keys = {(stage, i) for i in idxs}
        seen = not self.started.isdisjoint(keys)
        self.started |= keys
        return seen

    def begin_alone(self, stage: str, idx: int) -> int:
        """One image starts on its own; how often that happened before and never finished."""
        deaths = self.alone.get((stage, idx), 0)
        self.alone[(stage, idx)] = deaths + 1
        return deaths

    def survived(self, stage: str, idx: int) -> None:
        self.alone.pop((stage, idx), None)

    def finish(self, stage: str, idxs: list[int]) -> None:
        for i in idxs:
            self.started.discard((stage, i))
            self.alone.pop((stage, i), None)


class _ModelActor:
    """One model of the pipeline. The last one also fuses its items into schema rows:
    fusion costs ~1 ms of CPU per image, far less than moving the items (their semantic
    segments and instance runs, ~90 KB per image) to a separate fusion task would
    (BENCHMARKS.md, "Labeling overhead")."""

    def __init__(self, config: dict, roles: tuple[str, ...], thresholds: Thresholds | None,
                 ledger, max_deaths: int):
        model = ModelConfig(**config)
        device = "cuda" if model.num_gpus > 0 else "cpu"
        self.thresholds, self.ledger, self.max_deaths = thresholds, ledger, max_deaths
        self.name = "+".join(roles)
        self.stage = ModelStage(model, roles, device=device, drop_images=thresholds is not None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = self._guarded(_unpack(batch))
        if self.thresholds is None:
            return _pack(items)
        return _pack(rows_with_idx(items, self.thresholds), images=False)

    def _guarded(self, items: list[dict]) -> list[dict]:
        import ray

        idxs = [int(it["idx"]) for it in items]
        if not ray.get(self.ledger.begin.remote(self.name, idxs)):
            items = self.stage(items)
        else:
            log.warning("the %s model's process died on a batch of images #%d-#%d; redoing it "
                        "one image at a time", self.name, min(idxs), max(idxs))
            done = []
            for item in items:
                deaths = ray.get(self.ledger.begin_alone.remote(self.name, int(item["idx"])))
                if deaths >= self.max_deaths and item["error"] is None:
                    item["error"] = (f"{self.name} model {self.stage.config.backend!r}: its "
                                     f"process died {deaths} times on this image (a crash or "
                                     "out of memory)")
                    log.warning("giving up on %s: %s", item["image_id"], item["error"])
                done += self.stage([item])
                self.ledger.survived.remote(self.name, int(item["idx"]))
            items = done
        self.ledger.finish.remote(self.name, idxs)  # calls from one actor arrive in order
        return items


def rows_with_idx(items: list[dict], thresholds: Thresholds) -> list[dict]:
    """fuse_items, each row carrying its item's list position `idx` to the driver."""
    rows = fuse_items(items, thresholds)
    for item, row in zip(items, rows):
        row["idx"] = item["idx"]
    return rows


def model_stages(config: LabelingConfig) -> list[tuple[ModelConfig, tuple[str, ...]]]:
    """(model config, roles) per actor pool, in pipeline order."""
    if config.shared_model():
        return [(config.semantic, ("semantic", "instances"))]
    stages = []
    if config.semantic is not None:
        stages.append((config.semantic, ("semantic",)))
    if config.instances is not None:
        stages.append((config.instances, ("instances",)))
    return stages


def build_dataset(config: LabelingConfig, records: list[tuple[int, Any]], ledger):
    """The Ray Data pipeline over (list position, ImageRecord) pairs -> batches of `idx`
    and pickled schema rows (`payload`); `ledger` is a DeathLedger actor handle."""
    import ray.data

    n = config.decode_batch_size
    tables = [
        pa.table({
            "idx": pa.array([i for i, _ in chunk], pa.int64()),
            "image_id": [r.image_id for _, r in chunk], "path": [r.path for _, r in chunk],
            "class_index": pa.array([r.class_index for _, r in chunk], pa.int64()),
        })
        for chunk in (records[s:s + n] for s in range(0, len(records), n))
    ]
    # Ray Data retries tasks and restarts actors (retrying their batches) on system failures
    # (a dead worker or node) by default; errors of one image never reach Ray (error rows).
    cpu = {"num_cpus": config.decode_num_cpus}
    ds = ray.data.from_arrow(tables).map_batches(
        _decode_batch, batch_size=None, batch_format="numpy",
        fn_kwargs={"max_side": config.image_max_side, "store_images": config.store_images}, **cpu,
    )
    stages = model_stages(config)
    for k, (model, roles) in enumerate(stages):
        last = k == len(stages) - 1
        ds = ds.map_batches(
            _ModelActor, batch_size=model.batch_size, batch_format="numpy",
            fn_constructor_kwargs={"config": vars(model), "roles": roles,
                                   "thresholds": config.thresholds if last else None,
                                   "ledger": ledger, "max_deaths": config.max_model_deaths},
            compute=ray.data.ActorPoolStrategy(size=model.concurrency),
            num_gpus=model.num_gpus or None, num_cpus=model.num_cpus,
        )
    return ds


def _describe(model: ModelConfig) -> tuple[dict[str, Any], dict[int, str]]:
    backend = build_backend(model.backend, device="cuda" if model.num_gpus > 0 else "cpu",
                            **model.params)
    return backend.describe(), backend.vocabulary


def shard_metadata(config: LabelingConfig, input_root: Path) -> dict[str, Any]:
    """Vocabularies and producers, from each backend built once in a Ray task with the
    model's resources (the driver may lack the weights or the GPU); no predict is run."""
    import ray

    producers, vocab = [], {}
    for model, roles in model_stages(config):
        task = ray.remote(num_cpus=model.num_cpus, num_gpus=model.num_gpus, max_retries=3)(_describe)
        description, vocabulary = ray.get(task.remote(model))
        producers.append({**description, "roles": list(roles)})
        for role in roles:
            vocab[role] = {int(k): v for k, v in vocabulary.items()}
    semantic = vocab.get("semantic", {})
    return file_metadata(
        semantic_vocab=semantic, instance_vocab=semantic or vocab.get("instances", {}),
        classes={c.index: c.name for c in imagenet_classes()}, producers=producers,
        input_root=str(input_root), config=config.to_dict(),
    )


@dataclass
class Summary:
    output: Path
    images: int  # listed
    processed: int  # labeled by this run
    ok: int  # this run
    failed: int  # this run (error rows)
    shards_written: int
    shards_skipped: int
    seconds: float

    def text(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        return (f"labeled {self.processed} images ({self.ok} ok, {self.failed} failed) in "
                f"{self.seconds:.1f} s, {rate:.2f} images/s; {self.shards_written} shards "
                f"written, {self.shards_skipped} already done; {self.images} images in "
                f"{self.output}")


class _ShardAssembler:
    """Collects rows by shard and writes each shard once all its rows have arrived."""

    def __init__(self, output: Path, pending: list[Shard], meta: dict, config: LabelingConfig,
                 infos: dict[int, ShardInfo], on_shard: Callable[[ShardInfo], None] | None):
        self.output, self.meta, self.config, self.infos = output, meta, config, infos
        self.on_shard = on_shard
        self.pending = {s.index: s for s in pending}
        self.shard_of = {s.start + j: s for s in pending for j in range(len(s.records))}
        self.rows: dict[int, dict[int, dict]] = {s.index: {} for s in pending}
        self.written: list[ShardInfo] = []

    def add(self, idx: int, row: dict) -> None:
        shard = self.shard_of.get(idx)
        if shard is None or idx in self.rows.get(shard.index, {}):
            log.warning("ignoring a duplicate or unexpected row for image #%d", idx)
            return
        expected = shard.records[idx - shard.start].image_id
        if row["image_id"] != expected:
            raise RuntimeError(f"row #{idx} is {row['image_id']!r}, expected {expected!r}")
        bucket = self.rows[shard.index]
        bucket[idx] = row
        if len(bucket) == len(shard.records):
            self._write(shard, [bucket[i] for i in sorted(bucket)])
            del self.rows[shard.index]

    def _write(self, shard: Shard, rows: list[dict]) -> None:
        info = write_shard(self.output, shard.index, rows, self.meta,
                           row_group_size=self.config.row_group_size,
                           compression_level=self.config.compression_level)
        self.infos[shard.index] = info
        self.written.append(info)
        write_manifest(self.output, list(self.infos.values()), self.meta)
        log.debug("wrote %s (%d rows)", info.name, info.rows)
        if self.on_shard is not None:
            self.on_shard(info)

    def missing(self) -> int:
        """Images of unfinished shards whose rows never arrived."""
        return sum(len(self.pending[i].records) - len(b) for i, b in self.rows.items())


def _start_ray(address: str | None) -> bool:
    """Connect to (or start) Ray; True if this call started it (and should stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(include_dashboard=False, log_to_driver=True)
    return True


def check_resources(config: LabelingConfig, local: bool) -> None:
    """Fail fast (local Ray) or warn (cluster) when the actors and one CPU task cannot all fit:
    Ray would otherwise wait forever for resources that never come."""
    import ray

    stages = model_stages(config)
    need_cpu = sum(m.num_cpus * m.concurrency for m, _ in stages) + config.decode_num_cpus
    need_gpu = sum(m.num_gpus * m.concurrency for m, _ in stages)
    have = ray.cluster_resources()
    have_cpu, have_gpu = have.get("CPU", 0.0), have.get("GPU", 0.0)
    if need_cpu <= have_cpu and need_gpu <= have_gpu:
        return
    message = (f"this config needs {need_cpu:g} CPUs and {need_gpu:g} GPUs at once (model actors "
               f"+ one decode task) but Ray has {have_cpu:g} CPUs and {have_gpu:g} GPUs; lower "
               "the models' concurrency / num_cpus / num_gpus (or decode_num_cpus)")
    if local:
        raise ValueError(message)
    log.warning("%s; waiting for the cluster to provide them", message)


@contextlib.contextmanager
def _ray_data_settings():
    """Ray Data settings for this job, restored afterwards (the context is per process)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
             ctx.print_on_execution_start)
    ctx.execution_options.preserve_order = True  # shards complete in order: bounded memory
    ctx.enable_progress_bars = False  # our own tqdm bar counts images
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
         ctx.print_on_execution_start) = saved


def label_images(
    input_root: str | Path, output: str | Path, config: LabelingConfig, *,
    limit: int | None = None, address: str | None = None, progress: bool = True,
    on_shard: Callable[[ShardInfo], None] | None = None,
) -> Summary:
    """Label every listed image exactly once into `output`, skipping finished shards."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    root, output = Path(input_root).expanduser().resolve(), Path(output)
    records = list_images(root, limit)
    shards = plan_shards(records, config.shard_size)
    done = check_output(output, shards, config)
    remove_stale_temp_files(output)
    infos = existing_infos(output, done)
    pending = [s for s in shards if s.index not in done]
    log.info("%d images in %d shards under %s: %d shards done, %d to label",
             len(records), len(shards), root, len(done), len(pending))
    summary = Summary(output, len(records), 0, 0, 0, 0, len(done), 0.0)
    if not pending:  # all done: refresh the manifest (entries reused, not re-hashed)
        meta = read_metadata(open_shard(shard_path(output, 0)).schema_arrow)
        write_manifest(output, list(infos.values()), meta)
        summary.seconds = time.perf_counter() - t0
        return summary
    started = _start_ray(address)
    import ray

    todo = [(s.start + j, r) for s in pending for j, r in enumerate(s.records)]
    batches = None
    try:
        check_resources(config, local=address is None)
        assembler = _ShardAssembler(output, pending, shard_metadata(config, root), config,
                                    infos, on_shard)
        ledger = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(DeathLedger).remote()
        with _ray_data_settings():
            batches = iter(build_dataset(config, todo, ledger).iter_batches(
                batch_size=None, batch_format="numpy"))
        with tqdm(total=len(todo), unit="img", desc="labels", disable=not progress) as bar:
            for batch in batches:
                for idx, payload in zip(batch["idx"], batch["payload"]):
                    row = pickle.loads(payload)
                    row.pop("idx", None)
                    assembler.add(int(idx), row)
                    summary.processed += 1
                    summary.ok += row["status"] == "ok"
                    summary.failed += row["status"] != "ok"
                    bar.update(1)
    finally:
        if hasattr(batches, "close"):
            batches.close()  # stops the streaming executor (and its actors) on early exit
        if started:
            ray.shutdown()
    summary.shards_written = len(assembler.written)
    summary.seconds = time.perf_counter() - t0
    if assembler.missing():
        raise RuntimeError(f"{assembler.missing()} images never came back from the pipeline; "
                           "their shards were not written: rerun the same command to redo them")
    return summary


def _input_root(args, config_profile: str | None) -> Path:
    if args.input:
        return Path(args.input)
    if config_profile == "demo":
        from labeling.demo import build_demo_folder

        return build_demo_folder(Path(args.output).expanduser().resolve().parent / "demo_images")
    raise ValueError("--input is required (only --profile demo has a default input)")


def run(args) -> int:
    try:
        config = resolve(args.profile, args.config, args.overrides)
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        summary = label_images(_input_root(args, args.profile), args.output, config,
                               limit=args.limit, address=args.address)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"c2fmae labels: error: {exc}", file=sys.stderr)
        return 2
    print(summary.text())
    return 0
