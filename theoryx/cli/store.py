"""CLI commands of this area; each module exports ``COMMANDS`` (registered by the group)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
