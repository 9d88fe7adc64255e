"""`python -m ringwatch` runs the command line."""

from ringwatch.cli import app

app(prog_name="ringwatch")
