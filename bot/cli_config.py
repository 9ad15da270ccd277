"""`kbbot config`: the effective settings (secrets masked), or the README's configuration table."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import SecretStr

from retrieval.settings import Settings


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "****** (set)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def _portable(shown: str) -> str:
    """A default under the home directory written as `~/...`, so the README is the same on every machine."""
    home = str(Path.home())
    return "~" + shown[len(home):] if shown.startswith(home + "/") else shown


def settings_markdown() -> str:
    """One table per group of `retrieval.settings`, in the order of `Settings`."""
    sections = []
    for group in Settings.groups().values():
        title, _, about = (group.__doc__ or group.__name__).partition(": ")
        rows = [f"**{title}** (`{group.__name__}`){': ' + about if about else ''}", "",
                "| Variable | Default | What it does |", "|---|---|---|"]
        for name, field in group.model_fields.items():
            default = field.get_default(call_default_factory=True)
            shown = _portable(_show(default)) or "—"
            rows.append(f"| `{group.env_name(name)}` | `{shown}` | {field.description or ''} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections)


@click.command()
@click.option("--markdown", is_flag=True, help="Print the documented table of every setting.")
@click.pass_obj
def config(obj, markdown: bool) -> None:  # type: ignore[no-untyped-def]
    """Show the effective configuration (secrets masked)."""
    if markdown:
        click.echo(settings_markdown())
        return
    for group_name, group in Settings.groups().items():
        values = getattr(obj.settings, group_name)
        for name in group.model_fields:
            click.echo(f"{group.env_name(name)}={_show(getattr(values, name))}")


COMMANDS = [config]


TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def readme_with_table(readme: str) -> str:
    """The README with its configuration table regenerated between the two markers."""
    head, _, rest = readme.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{settings_markdown()}\n{TABLE_END}{tail}"


if __name__ == "__main__":  # `make readme`
    import sys

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
