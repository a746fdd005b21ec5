"""The README shows what the code and deploy/ hold: the generated diagram, the policy sample."""

from __future__ import annotations

import re
from pathlib import Path

from services.deal_lifecycle.diagram import mermaid
from services.deal_lifecycle.domain.model import Stage

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
