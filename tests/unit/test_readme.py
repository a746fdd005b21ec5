"""The README shows what the code and deploy/ hold: the generated diagram, the policy sample."""

from __future__ import annotations

import re
from pathlib import Path

from dealflow.deal_lifecycle.domain.model import Stage
from dealflow.deal_lifecycle.entrypoints.cli.diagram import mermaid

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_diagram_names_every_stage() -> None:
    text = mermaid()
    assert all(f"as {stage}" in text for stage in Stage)


def test_the_readme_diagram_has_not_drifted_from_the_machine() -> None:
    block = re.search(r"```mermaid\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "README has no mermaid block"
    assert block.group(1) == mermaid()


def test_the_readme_shows_the_policy_sample_as_it_is_in_deploy() -> None:
    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "README has no policy sample"
    assert block.group(1) == (README.parent / "deploy" / "policy.toml").read_text()


MAKEFILE = README.parent / "Makefile"


def test_the_readme_says_once_where_the_cli_is_and_make_run_prints_it() -> None:
    text = README.read_text()
    assert "**The `dealflow` command is in `.venv/bin`**" in text
    assert "`.venv/bin/dealflow ...`" in text and "source\n.venv/bin/activate" in text
    run = re.search(r"^run: .*?\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert run is not None and "$(BIN)/dealflow watch" in run.group(1).split("\n")[0], "make run must say where dealflow is before it starts"


def test_the_readme_says_where_the_embedded_nats_listens_and_its_snippet_connects_there() -> None:
    text = README.read_text()
    assert "`--nats-port PORT`" in text and "`var/nats.url`" in text
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None
    assert 'nats.connect(Path("var/nats.url").read_text().strip(), nkeys_seed="var/nats/credentials/client.nk")' in snippet.group(1)
    assert "asyncio.run(main())" in snippet.group(1), "runnable as written"


def test_the_readme_command_table_has_not_drifted_from_the_command_table() -> None:
    from dealflow.contracts import readme_command_table  # noqa: PLC0415

    block = re.search(r"<!-- command table: generated -->\n(.*?)<!-- end of command table -->", README.read_text(), re.S)
    assert block is not None, "README has no generated command table"
    assert block.group(1) == readme_command_table(), "paste contracts.readme_command_table() into the README"


def test_the_walk_away_row_shows_every_field_of_the_command() -> None:
    from dealflow.deal_lifecycle.entrypoints.nats_commands import MESSAGES  # noqa: PLC0415

    row = next(line for line in README.read_text().splitlines() if line.startswith("| `walk_away` |"))
    shown = set(re.findall(r'"(\w+)"', row.split("|")[3]))
    assert shown == set(MESSAGES["walk_away"].model_fields) - {"deal_id"}


def test_example_dates_a_command_must_take_in_the_future_are_not_literal_dates() -> None:
    # A literal `due` date is refused once it has passed, and the example stops working.
    assert re.findall(r'"due":\s*"\d{4}-', README.read_text()) == []


def test_the_readme_and_the_makefile_agree_on_how_long_the_benchmark_takes() -> None:
    readme = re.search(r"`make bench`, about (\w+) minutes", README.read_text())
    makefile = re.search(r"`make bench` \(full, about (\w+) minutes\)", MAKEFILE.read_text())
    assert readme is not None and makefile is not None
    assert readme.group(1) == makefile.group(1)


def test_every_file_the_readme_points_at_is_in_the_clone() -> None:
    text = README.read_text()
    named = set(re.findall(r"`([\w.\-/]+\.(?:md|toml|py|json|sqlite3))`", text)) | set(re.findall(r"\]\(([^)#:]+)\)", text))
    # var/ is made by the running service; a bare module name is explained where it appears.
    in_clone = {name for name in named if ("/" in name and not name.startswith("var/")) or name.endswith(".md")}
    assert sorted(name for name in in_clone if not (README.parent / name).exists()) == []


def _architecture_tree() -> str:
    section = README.read_text().split("## Architecture", 1)[1]
    block = re.search(r"```\n(services/.*?)```", section, re.S)
    assert block is not None, "the Architecture section has no tree of services/"
    return block.group(1)


def test_the_architecture_tree_names_every_module_and_no_module_that_is_gone() -> None:
    services = README.parent / "services"
    modules = {p.name for p in services.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    named = set(re.findall(r"\b(\w+\.py)\b", _architecture_tree()))
    assert sorted(modules - named) == [], "modules missing from the README's architecture tree"
    assert sorted(named - modules) == [], "the README's architecture tree names modules that do not exist"
