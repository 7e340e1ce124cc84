"""The label format (Parquet shards of COCO RLE masks): schema, writer, reader.

This package is the only contract between `labeling` (writes shards) and `model`
(trains from them). See docs/FORMAT.md.
"""

from dataset.reader import LabelReader, Position, instance_map, instance_masks, semantic_map
from dataset.schema import (
    LABEL_SCHEMA,
    QUALITY_FIELDS,
    SCHEMA_VERSION,
    STATUS_ERROR,
    STATUS_OK,
    file_metadata,
    read_metadata,
)
from dataset.shards import (
    ShardError,
    ShardInfo,
    list_shards,
    read_manifest,
    rebuild_manifest,
    write_manifest,
    write_shard,
)

__all__ = [
    "LABEL_SCHEMA", "QUALITY_FIELDS", "SCHEMA_VERSION", "STATUS_ERROR", "STATUS_OK",
    "LabelReader", "Position", "ShardError", "ShardInfo", "file_metadata", "instance_map",
    "instance_masks", "list_shards", "read_manifest", "read_metadata", "rebuild_manifest",
    "semantic_map", "write_manifest", "write_shard",
]
