"""Sharded Parquet datasets and job outputs over fsspec (local paths, s3://, any fsspec URL)."""

from dl3d.data.dataset import DatasetWriter, Shard, list_shards, part_name, read_meta, read_table
from dl3d.data.errors import DataError
from dl3d.data.output import JobOutput
from dl3d.data.schema import Column, TableSchema, arrow_to_tensor, list_to_arrow, tensor_to_arrow, tensor_type, to_table

__all__ = [
    "Column", "DataError", "DatasetWriter", "JobOutput", "Shard", "TableSchema", "arrow_to_tensor",
    "list_shards", "list_to_arrow", "part_name", "read_meta", "read_table", "tensor_to_arrow", "tensor_type",
    "to_table",
]
