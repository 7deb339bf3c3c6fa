"""``modalign eval``: a saved model + a manifest -> report.json, report.html and a printed table.

The reports go to their own directory (by default ``RUN/eval/<manifest stem>-<split>/``), never
over the training run's report: a directory that holds a training run is refused as ``out_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalign.data.dataset import SampleSet, split_rows
from modalign.data.loading import load_split, open_manifest
from modalign.data.manifest import Manifest
from modalign.data.sources.stream import stream_split
from modalign.errors import ConfigError, RunDirectoryError
from modalign.evaluation.embedded import EmbeddedSplit, embed_streamed
from modalign.evaluation.evaluate import evaluate_model, manifest_prompts
from modalign.evaluation.report import print_table, write_report
from modalign.model import MultimodalModel, load
from modalign.workflows.rundir import prepare_output_dir


def default_eval_dir(model_dir: Path, manifest_path: Path, split: str | None) -> Path:
    """``RUN/eval/<manifest stem>-<split>`` (``all`` for every row), RUN = the model's parent."""
    return Path(model_dir).parent / "eval" / f"{Path(manifest_path).stem}-{split or 'all'}"


def _configured(model_dir: Path, field: str) -> Any:
    """``data.<field>`` of the run that trained ``model_dir`` (``RUN/config.yaml``), if any."""
    path = Path(model_dir).parent / "config.yaml"
    if not path.is_file():
        return None
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    return data.get(field) if isinstance(data, dict) else None


def configured_label_column(model_dir: Path) -> str | None:
    """``data.label_column`` of the run that trained ``model_dir`` (``RUN/config.yaml``), if any."""
    value = _configured(model_dir, "label_column")
    return value if isinstance(value, str) else None


def eval_streams(model_dir: Path, source: str | None, rows: int) -> bool:
    """Whether ``modalign eval`` streams a split of ``rows`` rows: ``source`` (stream | memory |
    auto), else the training run's ``data.source`` (shards stream too); auto streams above the
    run's ``data.stream_above`` (50,000 without a run config)."""
    configured = _configured(model_dir, "source")
    source = source or (configured if configured in ("auto", "memory", "stream", "shards") else "auto")
    if source != "auto":
        return source != "memory"
    above = _configured(model_dir, "stream_above")
    if not isinstance(above, int):
        from modalign.config import DataConfig

        above = DataConfig.model_fields["stream_above"].default
    return rows > above


def run_eval(
    model_dir: Path,
    manifest_path: Path,
    *,
    split: str | None = "test",
    match_on: str | None = None,
    label_column: str | None = None,
    prompts_split: str | None = "train",
    split_column: str = "split",
    id_column: str = "id",
    ks: tuple[int, ...] = (1, 5, 10),
    out_dir: Path | None = None,
    show: bool = True,
    higher_order: bool = False,
    probe: bool = False,
    val_split: str | None = "val",
    corruptions: bool = False,
    templates: tuple[str, ...] = (),
    source: str | None = None,
    workers: int | None = None,
    blind_reference: Path | None = None,
    blind_thresholds: tuple[float, float] = (0.95, 0.6),
    blind_max_pairs: int = 1000,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``split`` of a manifest; writes ``out_dir/report.json`` (+ .html).

    ``out_dir`` is checked (a writable directory, not a training run) before anything is read.
    Zero-shot class prompts are the texts of each label in ``prompts_split``; ``templates``
    (``"a recording of {}"``, ``{}`` = the text) turn them into an ensemble per class.
    With ``probe`` (and a label column), a linear probe per modality trains on the
    ``prompts_split`` embeddings, its weight decay chosen on ``val_split`` (keys
    ``linear_probe/{modality}/lp_acc1`` ...). With ``corruptions``, retrieval and zero-shot again
    under each corruption of :mod:`modalign.evaluation.corruptions` (keys
    ``robustness/corruption/{corruption}/{query}->{target}/R@k``, ``.../zeroshot/{modality}/accuracy``).
    ``source`` (:func:`eval_streams`) and ``workers`` (default: the run's ``data.workers``, else 2):
    a streamed split is loaded by DataLoader workers and embedded batch by batch, and only its
    embeddings are kept (:mod:`modalign.evaluation.embedded`); the metrics equal the in-memory ones.
    With ``blind_reference`` (a model directory), CLIP-blind pairs against that model, scored
    MMVP-style (:mod:`modalign.workflows.blind_pairs`; ``blind_thresholds`` = (hi, lo)).

    Raises:
        RunDirectoryError: ``out_dir`` holds a training run (its report would be replaced).
        OutputError: ``out_dir`` is a file or cannot be written.
    """
    if out_dir is not None:
        out_dir = Path(out_dir)
        if (out_dir / "config.yaml").is_file() or (out_dir / "checkpoints").is_dir():
            raise RunDirectoryError(
                f"--out {out_dir} is a training run: writing there would replace its training report "
                f"(report.json); leave --out out to write to "
                f"{default_eval_dir(model_dir, manifest_path, split)}, or choose another directory"
            )
        prepare_output_dir(out_dir)
    if blind_reference is not None:
        from modalign.workflows.blind_pairs import check_thresholds

        check_thresholds(*blind_thresholds, blind_max_pairs)
    model = load(model_dir)
    manifest = open_manifest(manifest_path)
    if label_column is None:  # zero-shot only with class labels given or configured (never match_on)
        label_column = configured_label_column(model_dir)
    wanted = {match_on, label_column}
    if model.fusion_spec is not None:
        wanted |= {t.label_column for t in model.fusion_spec.tasks}
    keep = sorted(c for c in wanted if c is not None)
    stream = eval_streams(model_dir, source, len(split_rows(manifest, split_column, split)))
    if stream and corruptions:
        raise ConfigError("--corruptions re-reads the split in memory: add --source memory")
    if workers is None:
        configured = _configured(model_dir, "workers")
        workers = configured if isinstance(configured, int) else 2
    reader = SplitReader(model, manifest, split_column, id_column, show, workers if stream else None)
    # an empty split or a manifest without the model's columns is an error
    samples = reader.read(split, keep, [c for c in (match_on, label_column) if c is not None], required=True)
    text = next((m for m in model.modalities if model.specs[m].kind == "text"), None)
    prompts = None
    if label_column is not None and text is not None:
        prompts = manifest_prompts(
            manifest,
            split_column=split_column,
            split=prompts_split,
            text_column=model.specs[text].column,
            label_column=label_column,
        )
        if templates:  # prompt ensembling: every template around every class text
            from modalign.evaluation.zero_shot import fill_templates

            prompts = fill_templates(prompts, templates)
    metrics, extras = evaluate_model(
        model,
        samples,
        match_on=match_on,
        ks=ks,
        label_column=label_column,
        zeroshot_text=text,
        class_prompts=prompts,
        higher_order=higher_order,
    )
    if probe and label_column is not None:
        metrics.update(
            _linear_probes(
                reader,
                extras["_embeddings"],
                label_column,
                extras["_evaluation"],
                train_split=prompts_split,
                val_split=val_split,
            )
        )
    if blind_reference is not None:
        from modalign.workflows.blind_pairs import blind_pair_metrics

        more, extras["blind_pairs"] = blind_pair_metrics(
            model,
            blind_reference,
            manifest,
            samples,
            extras["_embeddings"],
            extras["_evaluation"],
            split=split,
            split_column=split_column,
            id_column=id_column,
            hi=blind_thresholds[0],
            lo=blind_thresholds[1],
            max_pairs=blind_max_pairs,
            show=show,
        )
        metrics.update(more)
    if corruptions and model.aligned:
        settings: dict[str, Any] = {"match_on": match_on, "ks": ks, "label_column": label_column}
        settings |= {"zeroshot_text": text, "class_prompts": prompts}
        metrics.update(_corruption_table(model, manifest, samples, metrics, settings))
    for reason, n in samples.skipped.items():
        metrics[f"data/skipped/{split}/{reason}"] = float(n)
    if show:
        print_table(metrics, title=f"{split or 'all'} split")
    if out_dir is not None:
        meta = {
            "model": str(model_dir),
            "manifest": str(manifest_path),
            "split": split,
            "match_on": match_on or "id",
            "n_samples": len(samples),
        }
        from modalign.evaluation.report_examples import sample_media

        specs = {m: (model.specs[m].kind, model.specs[m].column) for m in model.modalities}
        extras["_media"] = sample_media(manifest, samples.ids, specs, id_column)
        write_report(Path(out_dir) / "report.json", metrics, {**meta, **extras})
    return metrics


@dataclass(frozen=True)
class SplitReader:
    """Reads splits of ``manifest`` for ``model``: in memory, or streamed and embedded at once
    (``workers`` not None: DataLoader workers, only the embeddings kept)."""

    model: MultimodalModel
    manifest: Manifest
    split_column: str
    id_column: str
    show: bool
    workers: int | None

    def read(
        self, split: str | None, keep: list[str], scalars: list[str], required: bool = False
    ) -> SampleSet | EmbeddedSplit:
        common: dict[str, Any] = dict(
            split_column=self.split_column,
            id_column=self.id_column,
            keep_columns=keep,
            scalar_columns=scalars,
            required=required,
            show_progress=self.show,
        )
        sources = self.model.sources()
        if self.workers is None:
            return load_split(self.manifest, sources, split, **common)
        rows = stream_split(self.manifest, sources, split, workers=self.workers, **common)
        spec = self.model.fusion_spec
        return embed_streamed(self.model, rows, features=spec is not None and spec.input == "features")

    def embedded(self, split: str | None, label_column: str, required: bool = False) -> tuple[Any, Any]:
        """``(rows, modality -> embeddings)`` of ``split`` with its labels kept."""
        from modalign.evaluation.evaluate import embed_samples

        rows = self.read(split, [label_column], [label_column], required)
        return rows, rows.emb if isinstance(rows, EmbeddedSplit) else embed_samples(self.model, rows)


def _linear_probes(
    reader: SplitReader,
    test: dict[str, Any],
    label_column: str,
    ev: Any,
    *,
    train_split: str | None,
    val_split: str | None,
) -> dict[str, float]:
    """A CPU linear probe per modality on frozen embeddings of the train (and val) split; its
    per-sample hits and chance levels go to ``ev`` (an Evaluation) for the report's intervals."""
    from modalign.evaluation.chance import linear_probe_chance
    from modalign.evaluation.linear_probe import linear_probe

    model = reader.model
    embedded = {"train": reader.embedded(train_split, label_column, required=True)}
    val = reader.embedded(val_split, label_column) if val_split else None
    if val is not None and len(val[0]):
        embedded["val"] = val
    out: dict[str, float] = {}
    for m in model.modalities:

        def rows(samples: Any, emb: dict[str, Any], m: str = m) -> tuple[Any, list[Any]]:
            keep = samples.present(m).numpy() & [y is not None for y in samples.columns[label_column]]
            return emb[m][keep], [y for y, k in zip(samples.columns[label_column], keep) if k]

        tx, ty = rows(*embedded["train"])
        keep = test["present"][m] & [y is not None for y in test["labels"]]
        sx, sy = test["emb"][m][keep], [y for y, k in zip(test["labels"], keep) if k]
        vx, vy = rows(*embedded["val"]) if "val" in embedded else (None, None)
        if len(ty) and len(sy):
            result = linear_probe(tx, ty, sx, sy, vx, vy)
            for name, value in result.metrics.items():
                out[f"linear_probe/{m}/{name}"] = value
            for name, values in result.per_sample.items():
                ev.per_query[f"linear_probe/{m}/{name}"] = values
            for name, value in linear_probe_chance(result.n_classes).items():
                ev.chance[f"linear_probe/{m}/{name}"] = value
    return out


def _corruption_table(
    model: Any, manifest: Any, samples: Any, clean: dict[str, Any], settings: dict[str, Any]
) -> dict[str, float]:
    """Retrieval R@k and zero-shot accuracy involving each corrupted modality, plus a clean row."""
    from modalign.evaluation.corruptions import CORRUPTIONS, corrupted_copy
    from modalign.evaluation.evaluate import evaluate_samples

    out: dict[str, float] = {}
    sources = {s.name: s for s in model.sources()}
    for m in model.modalities:
        names = CORRUPTIONS.get(model.specs[m].kind, ())
        if not names:
            continue

        def keep(key: str, m: str = m) -> str | None:
            parts = key.split("/")
            if parts[0] == "retrieval" and m in parts[1].split("->") and parts[2].startswith("R@"):
                return f"{parts[1]}/{parts[2]}"
            if key == f"zeroshot/{m}/accuracy":
                return key
            return None

        for k, v in clean.items():
            if (short := keep(k)) is not None:
                out[f"robustness/corruption/none/{short}"] = v
        src = sources[m]

        def payload(i: int, src: Any = src) -> Any:
            return src.payload(manifest.rows[samples.rows[i]])

        for name in names:
            corrupted = corrupted_copy(samples, m, name, src.transform, payload, manifest.base_dir)
            for k, v in evaluate_samples(model, corrupted, **settings).items():
                if (short := keep(k)) is not None:
                    out[f"robustness/corruption/{name}/{short}"] = v
    return out
