"""Pre-training batches streamed from label shards, resumable mid-epoch.

How the rows are split (no row served twice, none missed, in one epoch):

* The label directory is cut into *units*: slices of one Parquet row group, at most
  ``unit_rows`` rows each (row groups are halved further while there are fewer units
  than readers, so that every reader has work).
* There are ``world_size x num_workers`` *readers*; reader ``rank * num_workers + role``.
  Each epoch the units are permuted with the seed ``(seed, epoch)`` and dealt round-robin:
  unit ``k`` of the permutation goes to reader ``k % readers``.
* A reader reads its units ``shuffle_window`` at a time, shuffles the rows of that window
  with the seed ``(seed, epoch, reader, window)``, skips ``status="error"`` rows, held-out
  rows and unreadable images (each counted), and batches the rest. It then goes on to its
  next epoch on its own; epochs of different readers may drift apart by a unit.
* Each row's crop and flip come from the seed ``(seed, epoch, shard, row)``, so a row gets
  the same augmentation in a given epoch whatever the number of readers.

The position of a reader is ``(epoch, window, offset)``. Every batch carries its reader's
position after it; :class:`PretrainLoader` keeps the latest position of each reader and
which reader comes next (a DataLoader takes batches from its workers in turn), which is
all a checkpoint needs to continue the same sequence of batches.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dataset import transforms
from dataset.reader import LabelReader
from dataset.schema import STATUS_OK
from dataset.shards import ShardError, open_shard

log = logging.getLogger(__name__)

READ_COLUMNS = ["image_id", "class_index", "height", "width", "status", "semantic", "instances"]
COUNTERS = ("served", "error_rows", "unreadable", "held_out")
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


# Shards a loader worker keeps open at once (each holds its Parquet footer in memory).
OPEN_SHARDS = 8


@dataclass
class DataConfig:
    """Where the labels are and how a training sample is made from a row."""

    labels: str = "out/labels"  # label directory (manifest.json + shards/)
    image_root: str | None = None  # overrides the shards' input_root
    img_size: int = 224  # image side; label maps are img_size / 4
    scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area share (MAE)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    num_workers: int = 2  # DataLoader worker processes per rank (0 = in the main process)
    prefetch: int = 2  # batches prefetched per worker
    shuffle: bool = True
    shuffle_window: int = 4  # units whose rows are shuffled together
    unit_rows: int = 256  # largest slice of a row group dealt to one reader
    holdout: float = 0.0  # share of rows (by hash of image_id) kept out for evaluation
    use_image_bytes: bool = True  # decode the shard's image_bytes where a row has them


@dataclass(frozen=True)
class Unit:
    """Rows [start, stop) of row group `group` of shard `shard`; `first` = its first row in the shard."""

    shard: int
    group: int
    start: int
    stop: int
    first: int


def is_held_out(image_id: str, fraction: float) -> bool:
    """Stable evaluation split: the crc32 of the image id decides, the same on every run."""
    return fraction > 0 and zlib.crc32(image_id.encode()) % 1_000_000 < fraction * 1_000_000


def plan_units(row_groups: list[list[int]], unit_rows: int, min_units: int) -> list[Unit]:
    """Units from the row-group sizes of each shard (see the module docstring)."""
    units = []
    for s, sizes in enumerate(row_groups):
        first = 0
        for g, n in enumerate(sizes):
            for a in range(0, n, max(1, unit_rows)):
                units.append(Unit(s, g, a, min(n, a + unit_rows), first + a))
            first += n
    while len(units) < min_units:
        big = max(units, key=lambda u: u.stop - u.start)
        n = big.stop - big.start
        if n < 2:
            break
        i, half = units.index(big), n // 2
        units[i : i + 1] = [
            Unit(big.shard, big.group, big.start, big.start + half, big.first),
            Unit(big.shard, big.group, big.start + half, big.stop, big.first + half),
        ]
    return units


def reader_units(units: list[Unit], epoch: int, seed: int, reader: int, readers: int,
                 shuffle: bool) -> list[Unit]:
    """The units reader `reader` (of `readers`) reads in `epoch`, in order."""
    order = np.random.default_rng([seed, epoch]).permutation(len(units)) if shuffle else range(len(units))
    return [units[i] for i in list(order)[reader::readers]]


class LabelSource:
    """What every reader needs to know about a label directory (picklable, small)."""

    def __init__(self, cfg: DataConfig, readers: int):
        reader = LabelReader(cfg.labels)
        self.paths = [str(p) for p in reader.paths]
        self.metadata = reader.metadata
        root = cfg.image_root or reader.input_root
        self.image_root = Path(root) if root else None
        self.lookup = transforms.vocabulary_lookup(reader.semantic_vocab)
        self.class_names = dict(self.metadata["vocabularies"].get("classes", {}))
        groups = reader.row_groups
        self.units = plan_units(groups, cfg.unit_rows, readers)
        self.rows = sum(sum(g) for g in groups)
        if self.rows < readers:
            raise ValueError(f"{cfg.labels}: {self.rows} rows cannot feed {readers} readers "
                             "(world_size x num_workers); use fewer workers")
        self.columns = READ_COLUMNS + (["image_bytes"] if cfg.use_image_bytes else [])
        if self.image_root is None and not cfg.use_image_bytes:
            raise ValueError(f"{cfg.labels}: the shards name no input_root; set data.image_root")

    @property
    def num_classes(self) -> int:
        """Number of semantic training classes (the vocabulary's size)."""
        return len(self.lookup)

    def image_source(self, row: dict[str, Any]) -> str | Path | bytes:
        if row.get("image_bytes"):
            return row["image_bytes"]
        if self.image_root is None:
            raise FileNotFoundError(f"{row['image_id']}: no image bytes and no input_root")
        return self.image_root / row["image_id"]


class ShardStream(torch.utils.data.IterableDataset):
    """Batches of one rank, from `num_workers` reader processes (or the main one).

    Yields dicts: image float32 [B,3,S,S] (normalized), semantic / instance int64
    [B,S/4,S/4], class_index int64 [B], image_id list[str], and `state` (the reader's
    role, position after this batch, and counters).
    """

    def __init__(self, source: LabelSource, cfg: DataConfig, batch_size: int, *, rank: int,
                 world_size: int, seed: int, start: dict[str, Any], epochs: int | None):
        self.source, self.cfg, self.batch_size = source, cfg, batch_size
        self.rank, self.world_size, self.seed, self.epochs = rank, world_size, seed, epochs
        self.start = start
        self._files: dict[int, Any] = {}

    def _identity(self) -> tuple[int, int, int]:
        info = torch.utils.data.get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        role = (wid + self.start.get("next_role", 0)) % workers
        return role, self.rank * workers + role, self.world_size * workers

    def _read_window(self, units: list[Unit]) -> list[dict[str, Any]]:
        rows = []
        for u in units:
            if u.shard not in self._files:
                if len(self._files) >= OPEN_SHARDS:  # a few open files, not one per shard
                    self._files.pop(next(iter(self._files))).close()
                self._files[u.shard] = open_shard(Path(self.source.paths[u.shard]))
            try:
                table = self._files[u.shard].read_row_group(u.group, columns=self.source.columns)
            except Exception as exc:  # pyarrow raises several types; name the file
                raise ShardError(f"{self.source.paths[u.shard]}: row group {u.group} unreadable ({exc})") from None
            for i, row in enumerate(table.slice(u.start, u.stop - u.start).to_pylist()):
                row["_shard"], row["_row"] = u.shard, u.first + i
                rows.append(row)
        return rows

    def _rows(self, reader: int, readers: int, pos: dict[str, int]) -> Iterator[tuple[dict, dict]]:
        """(row, position after it) pairs of one reader, from `pos` on."""
        epoch, window, offset = pos["epoch"], pos["window"], pos["offset"]
        k = max(1, self.cfg.shuffle_window)
        while self.epochs is None or epoch < self.epochs:
            units = reader_units(self.source.units, epoch, self.seed, reader, readers, self.cfg.shuffle)
            windows = [units[i : i + k] for i in range(0, len(units), k)]
            for w in range(window, len(windows)):
                rows = self._read_window(windows[w])
                order = (np.random.default_rng([self.seed, epoch, reader, w]).permutation(len(rows))
                         if self.cfg.shuffle else np.arange(len(rows)))
                for j in range(offset, len(rows)):
                    row = rows[order[j]]
                    row["_epoch"] = epoch
                    yield row, {"epoch": epoch, "window": w, "offset": j + 1}
                offset = 0
            epoch, window = epoch + 1, 0

    def _sample(self, row: dict[str, Any]) -> transforms.Sample:
        rng = np.random.default_rng([self.seed, row["_epoch"], row["_shard"], row["_row"]])
        c = self.cfg
        box = transforms.sample_crop(rng, row["height"], row["width"], c.scale, c.ratio, c.hflip)
        with transforms.open_image(self.source.image_source(row)) as image:
            return transforms.transform_row(row, image, box, c.img_size, self.source.lookup)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        role, reader, readers = self._identity()
        saved = self.start.get("readers", {}).get(str(role), {})
        pos = dict(saved.get("position", {"epoch": self.start.get("epoch", 0), "window": 0, "offset": 0}))
        counts = {k: int(saved.get("counts", {}).get(k, 0)) for k in COUNTERS}
        batch: list[tuple[dict, transforms.Sample]] = []
        served_in_epoch, epoch = 0, pos["epoch"]
        whole_epoch = pos["window"] == 0 and pos["offset"] == 0  # epoch seen from its start
        for row, nxt in self._rows(reader, readers, pos):
            if nxt["epoch"] != epoch:
                if served_in_epoch == 0 and whole_epoch:
                    raise ValueError(f"reader {reader} of {readers} found no usable rows in epoch "
                                     f"{epoch} (all error or held out); use fewer readers")
                served_in_epoch, epoch, whole_epoch = 0, nxt["epoch"], True
            if row["status"] != STATUS_OK:
                counts["error_rows"] += 1
            elif is_held_out(row["image_id"], self.cfg.holdout):
                counts["held_out"] += 1
            else:
                try:
                    batch.append((row, self._sample(row)))
                    counts["served"] += 1
                    served_in_epoch += 1
                except IMAGE_ERRORS as exc:
                    counts["unreadable"] += 1
                    log.warning("skipping %s: image unreadable (%s)", row["image_id"], exc)
            if len(batch) == self.batch_size:
                yield collate(batch, {"role": role, "position": nxt, "counts": dict(counts)})
                batch = []
        if batch:  # only reached when `epochs` is finite
            yield collate(batch, {"role": role, "position": nxt, "counts": dict(counts)})


def collate(items: list[tuple[dict, transforms.Sample]], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "image": torch.from_numpy(np.stack([s.image for _, s in items])),
        "semantic": torch.from_numpy(np.stack([s.semantic for _, s in items])),
        "instance": torch.from_numpy(np.stack([s.instance for _, s in items])),
        "class_index": torch.tensor([int(r["class_index"]) for r, _ in items], dtype=torch.int64),
        "image_id": [r["image_id"] for r, _ in items],
        "key": torch.tensor([[r["_shard"], r["_row"]] for r, _ in items], dtype=torch.int64),
        "state": state,
    }


class PretrainLoader:
    """Iterable of one rank's batches that remembers where it is (``state_dict``)."""

    def __init__(self, cfg: DataConfig, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epochs: int | None = None, pin_memory: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cfg, self.batch_size, self.rank, self.world_size = cfg, batch_size, rank, world_size
        self.seed, self.epochs, self.pin_memory = seed, epochs, pin_memory
        self.workers = max(1, cfg.num_workers)
        self.source = LabelSource(cfg, world_size * self.workers)
        self._state: dict[str, Any] = {"next_role": 0, "readers": {}}

    @property
    def readers(self) -> int:
        return self.world_size * self.workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = ShardStream(self.source, self.cfg, self.batch_size, rank=self.rank,
                             world_size=self.world_size, seed=self.seed, start=self.state_dict(),
                             epochs=self.epochs)
        workers = self.cfg.num_workers
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=workers, pin_memory=self.pin_memory,
            prefetch_factor=self.cfg.prefetch if workers else None,
        )
        for batch in loader:
            state = batch.pop("state")
            role = int(state["role"])
            self._state["readers"][str(role)] = {"position": state["position"], "counts": state["counts"]}
            self._state["next_role"] = (role + 1) % self.workers
            yield batch

    def counts(self) -> dict[str, int]:
        """Rows served and skipped so far by this rank's readers, summed."""
        return {k: sum(r["counts"].get(k, 0) for r in self._state["readers"].values()) for k in COUNTERS}

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "readers_total": self.readers, "workers": self.workers,
                "rank": self.rank, "seed": self.seed, **_copy(self._state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state; with another reader layout, restart its epoch."""
        if state.get("readers_total") == self.readers and state.get("workers") == self.workers:
            self._state = {"next_role": int(state["next_role"]), "readers": _copy(state["readers"])}
            return
        epochs = [r["position"]["epoch"] for r in state.get("readers", {}).values()] or [0]
        log.warning("loader state was saved with %s readers, now %d: restarting epoch %d from its start",
                    state.get("readers_total"), self.readers, min(epochs))
        self._state = {"next_role": 0, "readers": {}, "epoch": min(epochs)}


def _copy(obj: Any) -> Any:
    import copy
    return copy.deepcopy(obj)


# ---------------------------------------------------------------------------- Ray Data
class RayRowTransform:
    """Ray Data `flat_map` step: one label row -> [training sample], or [] when skipped.

    Crops are drawn from fresh entropy, so each pass over the data (epoch) differs; the
    Ray path does not reproduce batches bit for bit and resumes at epoch granularity.
    """

    def __init__(self, source: LabelSource, cfg: DataConfig):
        self.source, self.cfg = source, cfg

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        if row["status"] != STATUS_OK or is_held_out(row["image_id"], self.cfg.holdout):
            return []
        c = self.cfg
        box = transforms.sample_crop(np.random.default_rng(), row["height"], row["width"],
                                     c.scale, c.ratio, c.hflip)
        try:
            with transforms.open_image(self.source.image_source(row)) as image:
                sample = transforms.transform_row(row, image, box, c.img_size, self.source.lookup)
        except IMAGE_ERRORS as exc:
            log.warning("skipping %s: image unreadable (%s)", row["image_id"], exc)
            return []
        return [{"image": sample.image, "semantic": sample.semantic, "instance": sample.instance,
                 "class_index": int(row["class_index"])}]


def ray_dataset(cfg: DataConfig, source: LabelSource | None = None):
    """The shards as a Ray Dataset of training samples: read_parquet -> flat_map.

    Iterate with ``ds.iter_torch_batches(batch_size=..., drop_last=True)``; under Ray Train,
    pass it as ``datasets={"train": ds}`` and read ``ray.train.get_dataset_shard("train")``.
    """
    import ray.data

    source = source or LabelSource(cfg, readers=1)
    ds = ray.data.read_parquet(source.paths).select_columns(source.columns)
    return ds.flat_map(RayRowTransform(source, cfg))
