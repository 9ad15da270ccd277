"""`kbbot config`: the effective settings (secrets masked), or the README's configuration table."""

from __future__ import annotations

import click
from pydantic import AliasChoices, SecretStr

from retrieval.settings import Settings


def _env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field_name.upper()


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "****** (set)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def settings_markdown() -> str:
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "data_dir":
            default = "the user data dir (e.g. ~/.local/share/kbbot)"
        shown = _show(default) or "—"
        rows.append(f"| `{_env_name(name)}` | `{shown}` | {field.description or ''} |")
    return "\n".join(rows)


@click.command()
@click.option("--markdown", is_flag=True, help="Print the documented table of every setting.")
@click.pass_obj
def config(obj, markdown: bool) -> None:  # type: ignore[no-untyped-def]
    """Show the effective configuration (secrets masked)."""
    if markdown:
        click.echo(settings_markdown())
        return
    for name in Settings.model_fields:
        click.echo(f"{_env_name(name)}={_show(getattr(obj.settings, name))}")


COMMANDS = [config]


TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def readme_with_table(readme: str) -> str:
    """The README with its configuration table regenerated between the two markers."""
    head, _, rest = readme.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{settings_markdown()}\n{TABLE_END}{tail}"


if __name__ == "__main__":  # `make readme`
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
