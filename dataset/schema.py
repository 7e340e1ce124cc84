"""The label format: one pyarrow schema, versioned. docs/FORMAT.md describes it for users.

One row per input image, failed images included. Masks are COCO compressed RLE at the
original image resolution, so ``pycocotools.mask.decode({"size": [h, w], "counts": c})``
reads any of them with no help from this package.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1.0"
METADATA_KEY = b"c2fmae"  # file-level metadata: one JSON document under this key

STATUS_OK = "ok"
STATUS_ERROR = "error"

SEMANTIC_TYPE = pa.struct(
    [
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("counts", pa.binary(), nullable=False),
        pa.field("area", pa.int64(), nullable=False),
        pa.field("score", pa.float32()),
    ]
)

INSTANCE_TYPE = pa.struct(
    [
        pa.field("counts", pa.binary(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4), nullable=False),  # x, y, w, h (COCO)
        pa.field("area", pa.int64(), nullable=False),
        pa.field("score", pa.float32()),
        pa.field("stability", pa.float32()),
        pa.field("category_id", pa.int32(), nullable=False),  # majority semantic class, -1 none
        pa.field("source", pa.string()),
    ]
)

# Per-image metrics filled by labeling; every field may be null (e.g. error rows).
QUALITY_FIELDS: dict[str, pa.DataType] = {
    "num_semantic": pa.int32(),  # categories present in the semantic map
    "num_instances": pa.int32(),  # instance masks kept
    "num_instances_dropped": pa.int32(),  # removed as tiny or duplicate
    "instance_coverage": pa.float32(),  # share of pixels inside any instance
    "unlabeled_fraction": pa.float32(),  # share of pixels with no semantic label
    "mean_instance_score": pa.float32(),
    "mean_instance_stability": pa.float32(),
    "semantic_confidence": pa.float32(),  # mean max-probability over labeled pixels
    "semantic_entropy": pa.float32(),  # entropy (nats) of the semantic area distribution
    "semantic_purity": pa.float32(),  # mean share of an instance's pixels in its majority class
    "seconds": pa.float32(),  # wall time spent labeling this image
}
QUALITY_TYPE = pa.struct([pa.field(k, t) for k, t in QUALITY_FIELDS.items()])

LABEL_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("class_index", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("semantic", pa.list_(SEMANTIC_TYPE)),
        pa.field("instances", pa.list_(INSTANCE_TYPE)),
        pa.field("quality", QUALITY_TYPE),
        pa.field("image_bytes", pa.binary()),  # optional copy of the encoded image file
    ]
)

COLUMNS = tuple(LABEL_SCHEMA.names)
# Columns a reader needs for masks, i.e. everything except the optional image copy.
LABEL_COLUMNS = tuple(c for c in COLUMNS if c != "image_bytes")


def file_metadata(
    *,
    semantic_vocab: dict[int, str],
    instance_vocab: dict[int, str] | None = None,
    classes: dict[int, str] | None = None,
    producers: list[dict[str, Any]] | None = None,
    code_version: str | None = None,
    input_root: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document stored in every shard's Parquet footer (and in manifest.json).

    Vocabularies map integer ids to names; JSON turns the keys into strings, and
    :func:`read_metadata` turns them back.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "vocabularies": {
            "semantic": {str(k): v for k, v in semantic_vocab.items()},
            "instance": {str(k): v for k, v in (instance_vocab or semantic_vocab).items()},
            "classes": {str(k): v for k, v in (classes or {}).items()},
        },
        "producers": producers or [],
        "code_version": code_version or code_version_string(),
        "input_root": input_root,
        "config": config or {},
    }


def schema_with_metadata(meta: dict[str, Any]) -> pa.Schema:
    return LABEL_SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The c2fmae metadata of a Parquet schema, vocabulary keys as ints. ValueError if absent."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError("no c2fmae metadata in the Parquet footer (not a c2fmae label shard)")
    meta = json.loads(raw)
    meta["vocabularies"] = {
        name: {int(k): v for k, v in vocab.items()}
        for name, vocab in meta.get("vocabularies", {}).items()
    }
    return meta


def check_schema(schema: pa.Schema) -> list[str]:
    """Problems that make a file unreadable as labels of this version ([] when fine)."""
    problems = []
    try:
        meta = read_metadata(schema)
    except ValueError as exc:
        return [str(exc)]
    version = str(meta.get("schema_version"))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        problems.append(f"schema version {version} is not readable by this code ({SCHEMA_VERSION})")
    for field in LABEL_SCHEMA:
        if field.name not in schema.names:
            problems.append(f"missing column {field.name!r}")
        elif not schema.field(field.name).type.equals(field.type):
            problems.append(
                f"column {field.name!r} has type {schema.field(field.name).type}, expected {field.type}"
            )
    return problems


def code_version_string() -> str:
    """Package version plus the git commit when running from a checkout."""
    import subprocess
    from importlib import metadata
    from pathlib import Path

    try:
        version = metadata.version("c2fmae")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{version}+g{commit}" if commit else version
    except (OSError, subprocess.SubprocessError):
        return version
