"""`kbbot --help` lists every command with its whole first sentence, wrapped, instead of click's default of
one line cut at the terminal's width with "...": a newcomer picks a command from that list."""

from __future__ import annotations

import click

# Long enough for any first sentence; the formatter wraps it under the command's name.
SHORT_HELP_CHARS = 240


class FullHelpGroup(click.Group):
    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(SHORT_HELP_CHARS))
                for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
