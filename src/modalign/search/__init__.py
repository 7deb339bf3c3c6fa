"""Cross-modal search: a crash-safe vector index with metadata filters (FAISS in-process)."""

from modalign.search.index import Hit, Index

__all__ = ["Hit", "Index"]
