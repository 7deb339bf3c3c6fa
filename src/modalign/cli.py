"""The ``modalign`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

from pathlib import Path

import typer

from modalign import __version__

app = typer.Typer(help="modalign: multimodal representation learning.", no_args_is_help=True)
data_app = typer.Typer(help="Inspect and validate data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modalign {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """modalign: align, fuse, distill, retrieve and evaluate any number of modalities."""


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Path = typer.Argument(..., help="experiment YAML"),
    out: Path = typer.Option(None, "--out", help="run directory (default runs/<config name>)"),
    set_: list[str] = typer.Option([], "--set", help="override a field: --set trainer.max_steps=100"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in --out"),
) -> None:
    """Train a model, checkpointing as it goes, then evaluate it on the test split."""
    from modalign.config import load_config
    from modalign.errors import ModalignError
    from modalign.workflows.train import run_training

    try:
        cfg = load_config(config, set_)
        run_dir = out if out is not None else Path("runs") / config.stem
        metrics = run_training(cfg, run_dir, resume=resume)
    except ModalignError as e:
        _fail(e)
        return
    skipped = {k: v for k, v in metrics.items() if k.startswith("data/skipped/")}
    for k, v in skipped.items():
        typer.echo(f"skipped rows {k.removeprefix('data/skipped/')}: {int(v)}")
    typer.echo(f"model: {run_dir / 'model'}   report: {run_dir / 'report.json'}")


@app.command("eval")
def eval_(
    model_dir: Path = typer.Argument(..., help="a model directory (RUN/model)"),
    data: Path = typer.Option(..., "--data", help="manifest to evaluate on"),
    split: str | None = typer.Option("test", "--split", help="split to evaluate ('' = all rows)"),
    match_on: str | None = typer.Option(
        None, "--match-on", help="positives share this column's value (default: same id)"
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="class labels for zero-shot (default: --match-on)"
    ),
    prompts_split: str | None = typer.Option(
        "train", "--prompts-split", help="split whose texts give class prompts"
    ),
    split_column: str = typer.Option("split", "--split-column"),
    id_column: str = typer.Option("id", "--id-column"),
    out: Path | None = typer.Option(
        None, "--out", help="directory for report.json (default: model dir's parent)"
    ),
    higher_order: bool = typer.Option(
        False, "--higher-order", help="also retrieve each modality from all others (Symile MIP)"
    ),
) -> None:
    """Evaluate a saved model: retrieval for every modality pair and zero-shot accuracy."""
    from modalign.errors import ModalignError
    from modalign.workflows.evaluate import run_eval

    try:
        run_eval(
            model_dir,
            data,
            split=split or None,
            match_on=match_on,
            label_column=label_column,
            prompts_split=prompts_split,
            split_column=split_column,
            id_column=id_column,
            out_dir=out if out is not None else model_dir.parent,
            higher_order=higher_order,
        )
    except ModalignError as e:
        _fail(e)


@data_app.command("check")
def data_check(
    manifest: Path = typer.Argument(..., help="manifest to validate"),
    config: Path = typer.Option(..., "--config", help="experiment YAML naming the modalities"),
    set_: list[str] = typer.Option([], "--set", help="override a config field"),
) -> None:
    """Report every problem (row, column, file); exit 1 when there is one. Writes nothing."""
    from modalign.config import load_config
    from modalign.errors import ModalignError
    from modalign.workflows.check import check_manifest

    try:
        cfg = load_config(config, set_)
        problems, n_rows = check_manifest(manifest, cfg)
    except ModalignError as e:
        _fail(e)
        return
    for p in problems:
        typer.echo(str(p))
    typer.echo(f"{n_rows} rows checked, {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(code=1)
