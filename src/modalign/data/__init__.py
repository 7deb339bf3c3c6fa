"""Manifests, per-modality transforms, datasets and collation."""
