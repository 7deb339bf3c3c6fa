"""``python -m modalign`` runs the CLI."""

from modalign.cli import app

app(prog_name="modalign")
