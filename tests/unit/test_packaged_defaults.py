"""The files shipped inside the package are the checkout's deploy/ and schemas/ (one copy), and are
what is used when no path is configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from dealflow import contracts
from dealflow.notifier.rules import RulesNotFound, default_rules_path, load_rules
from dealflow.notifier.schemas import EventSchemas
from dealflow.notifier.settings import NotifierSettings
from dealflow.deal_lifecycle.config import Settings
from tests.support import ROOT


def test_the_shipped_defaults_are_the_checkouts_files_not_copies() -> None:
    assert default_rules_path().resolve() == (ROOT / "deploy" / "alert-rules.toml").resolve()
    assert contracts.SCHEMAS.resolve() == (ROOT / "schemas").resolve()
    assert contracts.checkout_schemas() == (ROOT / "schemas").resolve()


def test_no_configured_rules_are_the_sample_rules_and_the_shipped_schemas() -> None:
    rules = load_rules(None)
    assert rules.spec == load_rules(ROOT / "deploy" / "alert-rules.toml").spec
    assert "ContractSigned" in EventSchemas().event_types


def test_missing_rules_are_not_found_naming_the_path_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    with pytest.raises(RulesNotFound) as caught:
        load_rules(path)
    assert str(caught.value) == f"not found: {path} (set DEALFLOW_ALERT_RULES to an existing file, or unset it to use the built-in default)"


def test_unset_or_empty_settings_mean_the_built_in_defaults() -> None:
    assert Settings.from_env({}).policy_path is None
    assert Settings.from_env({"DEALFLOW_POLICY": ""}).describe_policy() == "built-in default"
    assert Settings.from_env({"DEALFLOW_POLICY": "p.toml"}).describe_policy() == "p.toml"
    assert NotifierSettings.from_env({}).rules_path is None
    assert NotifierSettings.from_env({"DEALFLOW_ALERT_RULES": "r.toml"}).rules_path == Path("r.toml")
