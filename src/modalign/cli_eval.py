"""``modalign eval``: its options and the call of the evaluation workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# one alias per option of `modalign eval --help`, in its order; the defaults are in eval_'s signature
ModelDir = Annotated[Path, typer.Argument(help="a model directory (RUN/model)")]
Data = Annotated[Path, typer.Option("--data", help="manifest to evaluate on")]
Split = Annotated[str | None, typer.Option("--split", help="split to evaluate ('' = all rows)")]
MatchOn = Annotated[
    str | None, typer.Option("--match-on", help="positives share this column's value (default: same id)")
]
LabelColumn = Annotated[
    str | None,
    typer.Option(
        "--label-column",
        help="class labels for zero-shot (default: the training config's data.label_column; "
        "without one, no zero-shot)",
    ),
]
PromptsSplit = Annotated[
    str | None, typer.Option("--prompts-split", help="split whose texts give class prompts")
]
SplitColumn = Annotated[str, typer.Option("--split-column")]
IdColumn = Annotated[str, typer.Option("--id-column")]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="directory for report.json and report.html (default: RUN/eval/<manifest>-<split>, "
        "RUN being the model directory's parent)",
    ),
]
HigherOrder = Annotated[
    bool, typer.Option("--higher-order", help="also retrieve each modality from all others (Symile MIP)")
]
LinearProbe = Annotated[
    bool,
    typer.Option("--linear-probe", help="linear probe on frozen embeddings (trained on --prompts-split)"),
]
PromptTemplate = Annotated[
    list[str],
    typer.Option(
        "--prompt-template", help="zero-shot prompt template, {} = a class text (repeat to ensemble)"
    ),
]
Corruptions = Annotated[
    bool,
    typer.Option(
        "--corruptions", help="metrics again under image noise/blur and audio noise/clipping/truncation"
    ),
]
Source = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="memory | stream | auto: stream the split through DataLoader workers, keeping only its "
        "embeddings (default: the training run's data.source; auto streams above data.stream_above rows)",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers", min=0, help="DataLoader workers of a streamed split (default: the run's data.workers)"
    ),
]
BlindPairs = Annotated[
    Path | None,
    typer.Option(
        "--blind-pairs",
        help="a reference model directory: mine pairs this model finds near-identical and the "
        "reference different (CLIP-blind pairs), score them MMVP-style with each item's text",
    ),
]
BlindThresholds = Annotated[
    tuple[float, float],
    typer.Option("--blind-thresholds", help="HI LO: pairs with cosine > HI here and < LO in the reference"),
]
BlindMaxPairs = Annotated[
    int, typer.Option("--blind-max-pairs", help="keep the pairs of largest disagreement")
]


def eval_(
    model_dir: ModelDir,
    data: Data,
    split: Split = "test",
    match_on: MatchOn = None,
    label_column: LabelColumn = None,
    prompts_split: PromptsSplit = "train",
    split_column: SplitColumn = "split",
    id_column: IdColumn = "id",
    out: Out = None,
    higher_order: HigherOrder = False,
    linear_probe: LinearProbe = False,
    prompt_template: PromptTemplate = [],  # noqa: B006  (never mutated)
    corruptions: Corruptions = False,
    source: Source = None,
    workers: Workers = None,
    blind_pairs: BlindPairs = None,
    blind_thresholds: BlindThresholds = (0.95, 0.6),
    blind_max_pairs: BlindMaxPairs = 1000,
) -> None:
    """Evaluate a saved model: retrieval for every modality pair and zero-shot accuracy."""
    # an error raised here is printed as one `error:` line with exit code 2 by cli._ErrorLines
    from modalign.errors import ConfigError
    from modalign.workflows.evaluate import default_eval_dir, run_eval

    if source not in (None, "memory", "stream", "auto"):
        raise ConfigError(f"--source {source!r}: give memory, stream or auto")

    where = out if out is not None else default_eval_dir(model_dir, data, split or None)
    run_eval(
        model_dir,
        data,
        split=split or None,
        match_on=match_on,
        label_column=label_column,
        prompts_split=prompts_split,
        split_column=split_column,
        id_column=id_column,
        out_dir=where,
        higher_order=higher_order,
        probe=linear_probe,
        corruptions=corruptions,
        templates=tuple(prompt_template),
        source=source,
        workers=workers,
        blind_reference=blind_pairs,
        blind_thresholds=blind_thresholds,
        blind_max_pairs=blind_max_pairs,
    )
    typer.echo(f"report: {where / 'report.json'}   {where / 'report.html'}")
