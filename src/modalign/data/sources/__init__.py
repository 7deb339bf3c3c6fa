"""Batch sources beyond the in-memory :class:`~modalign.data.dataset.SampleSet`: WebDataset shards."""

from modalign.data.sources.pack import PackResult, pack_manifest, shard_paths
from modalign.data.sources.shards import ShardBatches, ShardStream

__all__ = ["PackResult", "ShardBatches", "ShardStream", "pack_manifest", "shard_paths"]
