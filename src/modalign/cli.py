"""The ``modalign`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from modalign import __version__
from modalign.cli_eval import eval_

# exit codes, usage errors and Ctrl-C keep click's handling (typer may vendor click: found by name)
_CLICK_FLOW: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


class _ErrorLines(TyperGroup):
    """Every failure of a command is one ``error:`` line and exit code 2 (see :func:`_fail`)."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer may vendor click)
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except Exception as e:
            _fail(e)


app = typer.Typer(cls=_ErrorLines, help="modalign: multimodal representation learning.", no_args_is_help=True)
data_app = typer.Typer(help="Inspect and validate data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
index_app = typer.Typer(help="Build vector indexes of embedded corpora.", no_args_is_help=True)
app.add_typer(index_app, name="index")


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


def _fail(e: Exception) -> NoReturn:
    """Print ``error: ...`` on stderr and exit with code 2; ``MODALIGN_DEBUG=1`` re-raises instead.

    A :class:`ModalignError` or an :class:`OSError` (disk full, no permission) is the user's to fix
    and prints as it is; anything else is a bug in modalign: ``error: internal error (Type: ...)``
    with the hint to rerun with ``MODALIGN_DEBUG=1`` for the traceback.
    """
    from modalign.errors import ModalignError

    if os.environ.get("MODALIGN_DEBUG", "") not in ("", "0"):
        raise e
    if isinstance(e, (ModalignError, OSError)):
        message = str(e)  # several invalid config fields stay on indented lines below
    else:
        detail = " ".join(str(e).split())
        message = (
            f"internal error ({type(e).__name__}: {detail}); rerun with MODALIGN_DEBUG=1 for the "
            "traceback and report it"
        )
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Path = typer.Argument(..., help="experiment YAML"),
    out: Path = typer.Option(None, "--out", help="run directory (default runs/<config name>)"),
    set_: list[str] = typer.Option([], "--set", help="override a field: --set trainer.max_steps=100"),
    resume: bool = typer.Option(
        False, "--resume", help="continue the run in --out from its newest checkpoint (same config)"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="delete the earlier run in --out and start again"
    ),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="train on N local processes (launches torchrun; global batch)"
    ),
) -> None:
    """Train a model, checkpointing as it goes, then evaluate it on the test split.

    --out must be new or empty unless --resume or --overwrite; it is locked while the run lasts.
    """
    from modalign.config import load_config
    from modalign.errors import ModalignError
    from modalign.workflows.train import run_training

    if nproc > 1:
        from modalign.workflows.launch import launch_torchrun, train_args

        try:
            code = launch_torchrun(nproc, train_args(config, out, set_, resume, overwrite))
        except ModalignError as e:
            _fail(e)
        raise typer.Exit(code=code)
    try:
        cfg = load_config(config, set_)
        run_dir = out if out is not None else Path("runs") / config.stem
        metrics = run_training(cfg, run_dir, resume=resume, overwrite=overwrite)
    except ModalignError as e:
        _fail(e)
        return
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    skipped = {k: v for k, v in metrics.items() if k.startswith("data/skipped/")}
    for k, v in skipped.items():
        typer.echo(f"skipped rows {k.removeprefix('data/skipped/')}: {int(v)}")
    typer.echo(f"model: {run_dir / 'model'}   report: {run_dir / 'report.json'}")


app.command("eval")(eval_)


@app.command()
def compare(
    runs: list[str] = typer.Argument(
        ..., help="run or eval directories (with report.json); DIR1,DIR2 = seeds of one setting"
    ),
) -> None:
    """Runs side by side: mean ± std over seeds, paired-bootstrap differences vs the first."""
    from modalign.evaluation.compare import compare as compare_runs
    from modalign.evaluation.compare import load_setting, print_comparison

    settings = [load_setting(r) for r in runs]
    print_comparison(settings, compare_runs(settings))


@data_app.command("pack")
def data_pack(
    manifest: Path = typer.Argument(..., help="manifest whose rows and media files to pack"),
    out: Path = typer.Option(..., "--out", help="directory for shard-000000.tar, ..."),
    shard_size: int = typer.Option(1000, "--shard-size", help="samples per shard"),
) -> None:
    """Write WebDataset tar shards: per row its JSON (missing modalities kept) and media bytes."""
    from rich.progress import Progress

    from modalign.data.manifest import read_manifest
    from modalign.data.sources import pack_manifest

    rows = read_manifest(manifest)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"packing {len(rows.rows)} rows", total=len(rows.rows))
        result = pack_manifest(rows, out, shard_size, progress=lambda done: bar.update(task, completed=done))
    typer.echo(f"{result.samples} samples ({result.files} media files) in {len(result.shards)} shards: {out}")


@data_app.command("check")
def data_check(
    manifest: Path = typer.Argument(..., help="manifest to validate"),
    config: Path = typer.Option(..., "--config", help="experiment YAML naming the modalities"),
    set_: list[str] = typer.Option([], "--set", help="override a config field"),
) -> None:
    """Per split and modality the rows present, absent and bad, then every problem (row, column,
    file); exit 1 when there is one. Writes nothing."""
    from modalign.config import load_config
    from modalign.errors import ModalignError
    from modalign.workflows.check import check_data, coverage_table

    try:
        cfg = load_config(config, set_)
        result = check_data(manifest, cfg)
    except ModalignError as e:
        _fail(e)
        return
    for line in coverage_table(result.coverage):
        typer.echo(line)
    for w in result.warnings:
        typer.echo(w, err=True)
    for p in result.problems:
        typer.echo(str(p))
    typer.echo(f"{result.n_rows} rows checked, {len(result.problems)} problem(s)")
    if result.problems:
        raise typer.Exit(code=1)


@app.command()
def init(
    manifest: Path = typer.Argument(..., help="JSONL, CSV or Parquet manifest, one row per sample"),
    out: Path | None = typer.Option(
        None, "--out", help="config to write (default: <manifest's folder name>.yaml here)"
    ),
    archive: Path | None = typer.Option(
        None, "--archive", help="tar(.gz) holding the manifest, extracted next to itself first"
    ),
    label: str | None = typer.Option(
        None, "--label", help="label column (default: a column named label, class, target, ...)"
    ),
    skip: list[str] = typer.Option([], "--skip", help="leave a column out (repeatable)"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out file"),
) -> None:
    """Write a commented config inferred from a manifest's columns, and say what was inferred and why."""
    from modalign.errors import ModalignError
    from modalign.workflows.init import default_config_path, infer_config, write_config

    target = out if out is not None else default_config_path(manifest)
    try:
        result = infer_config(manifest, archive, label=label, skip=skip, out=target)
        write_config(result, target, force=force)
    except ModalignError as e:
        _fail(e)
        return
    width = max(len(f.column) for f in result.findings)
    use = max(len(f.use) for f in result.findings)
    typer.echo(f"{result.n_rows} rows in {manifest}")
    for f in result.findings:
        typer.echo(f"  {f.column:<{width}}  {f.use:<{use}}  {f.reason}")
    for note in result.notes:
        typer.echo(note)
    typer.echo(f"wrote {target}; next:")
    typer.echo(f"  modalign data check {manifest} --config {target}")
    typer.echo(f"  modalign train {target}")


_SECTIONS = {"encoders": "encoder", "objectives": "objective", "fusion": "fusion"}


@app.command("list")
def list_(
    section: str | None = typer.Argument(None, help="encoders, objectives or fusion (default: all three)"),
) -> None:
    """List the registered encoders, objectives and fusion modules, one line each."""
    import inspect

    kinds = list(_SECTIONS.items())
    if section is not None:
        kinds = [(s, k) for s, k in kinds if section in (s, k)]
        if not kinds:
            typer.secho(
                f"error: unknown section {section!r}; choose one of {', '.join(_SECTIONS)}",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(code=2)
    import modalign.encoders  # noqa: F401  (importing the packages registers their names)
    import modalign.fusion  # noqa: F401
    import modalign.objectives  # noqa: F401
    from modalign.registry import lookup, names

    for title, kind in kinds:
        typer.echo(title)
        found = names(kind)
        width = max(map(len, found), default=0)
        for name in found:
            doc = inspect.getdoc(lookup(kind, name)) or "(no description)"
            summary = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, on one line
            typer.echo(f"  {name:<{width}}  {summary}")


@app.command()
def serve(
    index: Path = typer.Argument(..., help="index directory (modalign index build)"),
    model: Path | None = typer.Option(
        None, "--model", help="the model that embedded the index (default: the one the index names)"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (other than loopback: set a key)"),
    port: int = typer.Option(8000, "--port"),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="require header X-API-Key on every route but /health and the page "
        "(default: $MODALIGN_API_KEY; none when unset)",
    ),
    cors_origin: list[str] = typer.Option([], "--cors-origin", help="allow this origin (repeatable)"),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", help="request body limit (413 above)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds before a request answers 504"),
    max_batch: int = typer.Option(64, "--max-batch", help="queries per encode call (1 = no micro-batching)"),
) -> None:
    """Serve search over HTTP (FastAPI) with a web page at /; binds 127.0.0.1 unless told otherwise."""
    from modalign.serving.server import api_key_from, build_app, is_loopback
    from modalign.serving.server import serve as run_server
    from modalign.serving.settings import ServeSettings

    key = api_key_from(api_key)
    settings = ServeSettings(
        api_key=key,
        max_body_bytes=max(1, int(max_body_mb * 1024 * 1024)),
        timeout_s=timeout,
        cors_origins=tuple(cors_origin),
        max_batch=max_batch,
    )
    app_ = build_app(index, model, settings)
    if not is_loopback(host) and key is None:
        typer.secho(
            f"warning: serving on {host} without an API key: anyone who can reach it can search", err=True
        )
    typer.echo(f"serving {index} on http://{host}:{port}/ (API schema: /openapi.json)")
    run_server(app_, host, port)


@app.command()
def embed(
    model_dir: Path = typer.Argument(..., help="a model directory (RUN/model) or run directory"),
    data: Path = typer.Option(..., "--data", help="manifest whose rows to embed (JSONL, CSV, Parquet)"),
    modality: str = typer.Option(..., "--modality", help="the model's modality to embed, e.g. image"),
    out: Path = typer.Option(..., "--out", help="output directory (rerun the same command to resume)"),
    batch_size: int = typer.Option(64, "--batch-size", help="rows per forward pass"),
    chunk_rows: int = typer.Option(4096, "--chunk-rows", help="manifest rows per output chunk"),
    id_column: str = typer.Option("id", "--id-column"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray cluster)"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: RAY_ADDRESS or a new local cluster)"
    ),
) -> None:
    """Embed one modality of a corpus into chunks of vectors + ids + metadata; resumable."""
    from modalign.workflows.embed import describe, run_embed

    summary = run_embed(
        model_dir,
        data,
        modality,
        out,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        id_column=id_column,
        engine=engine,
        address=address,
    )
    for line in describe(summary):
        typer.echo(line)


@index_app.command("build")
def index_build(
    emb_dir: Path = typer.Argument(..., help="embeddings written by modalign embed"),
    out: Path = typer.Option(..., "--out", help="index directory to create (new or empty)"),
    kind: str = typer.Option("flat", "--kind", help="flat (exact), hnsw or ivfpq (approximate)"),
    param: list[str] = typer.Option([], "--param", help="a kind's parameter: --param ef_search=128"),
) -> None:
    """Build a crash-safe index (FAISS) of an embedded corpus, metadata included."""
    from modalign.workflows.search import build_index, parse_params

    with build_index(emb_dir, out, kind, parse_params(param)) as idx:
        typer.echo(f"indexed {len(idx)} items of dim {idx.dim} ({idx.kind}) into {out}")


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="an index built by modalign index build"),
    model: Path | None = typer.Option(None, "--model", help="model directory (default: the index's)"),
    text: str | None = typer.Option(None, "--text", help="a text query"),
    image: Path | None = typer.Option(None, "--image", help="an image file as the query"),
    audio: Path | None = typer.Option(None, "--audio", help="an audio file as the query"),
    like: str | None = typer.Option(None, "--like", help="find items similar to this indexed id"),
    k: int = typer.Option(10, "--k", help="number of results"),
    filter_: list[str] = typer.Option(
        [], "--filter", help="metadata filter, repeatable: split=test, label=a|b, year>=2000, or JSON"
    ),
    weight: list[str] = typer.Option([], "--weight", help="composed queries: --weight text=0.7 (default 1)"),
    combine: str = typer.Option("auto", "--combine", help="sum, symile, or auto (symile if trained with it)"),
    as_json: bool = typer.Option(False, "--json", help='print {"results": [{id, score, metadata}]}'),
) -> None:
    """Search an index with text, an image, audio (several compose) or --like ID."""
    import json

    from modalign.search import Index
    from modalign.workflows.search import hits_json, hits_lines, parse_filters, parse_params
    from modalign.workflows.search import search as run_search

    queries = {
        "text": text,
        "image": None if image is None else str(image),
        "audio": None if audio is None else str(audio),
    }
    weights = {name: float(w) for name, w in parse_params(weight).items()}
    with Index.open(index_dir) as idx:
        hits = run_search(
            idx,
            model_dir=model,
            queries=queries,
            like=like,
            k=k,
            where=parse_filters(filter_),
            weights=weights,
            combine=combine,
        )
    if as_json:
        typer.echo(json.dumps(hits_json(hits), ensure_ascii=False))
    else:
        for line in hits_lines(hits):
            typer.echo(line)
