"""Reading the Right Terms policy file: the sample loads, and a bad file is refused naming its line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dealflow.deal_lifecycle.adapters.policy_file import PolicyError, PolicyNotFound, default_policy_path, load_policy
from dealflow.deal_lifecycle.domain.policy import Worse
from tests.support import POLICY_FILE

PREAMBLE = ['label = "test policy"', "", "# payment terms come first, the term under test after them"]
PAYMENT_TERMS = ["[terms.payment_terms_days]", "public = 45", "limit = 60", 'worse = "higher"', ""]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def line_of(lines: list[str], text: str) -> int:
    """The 1-based line number of `text` in the file written from `lines`."""
    return lines.index(text) + 1


def refusal(path: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value)


def test_the_sample_policy_loads_with_its_terms_non_negotiables_and_right_client_criteria() -> None:
    policy = load_policy(POLICY_FILE)

    payment = policy.terms["payment_terms_days"]
    assert (payment.public, payment.limit, payment.worse) == (45, 60, Worse.HIGHER)
    discount = policy.terms["discount_percent"]
    assert (discount.public, discount.limit, discount.worse) == (0, 10, Worse.HIGHER)
    assert "msa_signed_first" in policy.non_negotiables
    assert policy.right_client.min_annual_value == 50000


def test_the_policy_version_is_the_sha256_of_the_file_bytes() -> None:
    policy = load_policy(POLICY_FILE)

    assert policy.version == "sha256:" + hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest()


def test_changing_one_byte_of_the_policy_changes_its_version(tmp_path: Path) -> None:
    original = POLICY_FILE.read_bytes()
    changed = original.replace(b"Right Clients", b"Right Clientz", 1)
    assert len(changed) == len(original)
    assert sum(a != b for a, b in zip(original, changed, strict=True)) == 1
    copy = tmp_path / "policy.toml"
    copy.write_bytes(changed)

    version = load_policy(copy).version

    assert version != load_policy(POLICY_FILE).version
    assert version == "sha256:" + hashlib.sha256(changed).hexdigest()


def test_malformed_toml_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    lines = [*PREAMBLE, "[terms.discount_percent]", "public = 0", "limit = ", 'worse = "higher"']
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message.startswith(f"{path}:{line_of(lines, 'limit = ')}: not valid TOML:"), message


def test_a_term_without_a_limit_names_its_table_line_and_the_missing_field(tmp_path: Path) -> None:
    lines = [*PREAMBLE, *PAYMENT_TERMS, "[terms.discount_percent]", "public = 0", 'worse = "higher"']
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message.startswith(f"{path}:{line_of(lines, '[terms.discount_percent]')}: terms.discount_percent.limit: "), message
    assert "Field required" in message


def test_a_term_value_of_the_wrong_type_names_its_line_and_field(tmp_path: Path) -> None:
    wrong = 'public = "forty"'
    lines = [*PREAMBLE, *PAYMENT_TERMS, "[terms.discount_percent]", wrong, "limit = 10", 'worse = "higher"']
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message.startswith(f"{path}:{line_of(lines, wrong)}: terms.discount_percent.public: "), message
    assert "valid number" in message


def test_a_direction_other_than_higher_or_lower_names_its_line_and_field(tmp_path: Path) -> None:
    sideways = 'worse = "sideways"'
    lines = [*PREAMBLE, *PAYMENT_TERMS, "[terms.discount_percent]", "public = 0", "limit = 10", sideways]
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message.startswith(f"{path}:{line_of(lines, sideways)}: terms.discount_percent.worse: "), message
    assert "'higher' or 'lower'" in message


def test_a_limit_better_for_the_firm_than_its_public_position_is_refused(tmp_path: Path) -> None:
    lines = [*PREAMBLE, "[terms.payment_terms_days]", "public = 45", "limit = 30", 'worse = "higher"']
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message.startswith(f"{path}:{line_of(lines, '[terms.payment_terms_days]')}: terms.payment_terms_days: "), message
    assert "limit 30 must not be better for the firm than the public position 45" in message


def test_a_misspelt_key_is_refused_naming_its_line(tmp_path: Path) -> None:
    # An optional key misspelt: without `extra="forbid"` it would be dropped silently.
    typo = 'unti = "%"'
    lines = [*PREAMBLE, *PAYMENT_TERMS, "[terms.discount_percent]", "public = 0", "limit = 10", typo, 'worse = "higher"']
    path = write(tmp_path, lines)

    message = refusal(path)

    assert message == f"{path}:{line_of(lines, typo)}: terms.discount_percent.unti: Extra inputs are not permitted"


def test_a_missing_policy_file_is_not_found_naming_the_path_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "policy.toml"

    with pytest.raises(PolicyNotFound) as caught:
        load_policy(path)

    assert str(caught.value) == f"not found: {path} (set DEALFLOW_POLICY to an existing file, or unset it to use the built-in default)"


def test_an_unreadable_policy_path_is_refused_naming_the_path(tmp_path: Path) -> None:
    message = refusal(tmp_path)  # a directory: it exists, but is not a file

    assert message.startswith(f"{tmp_path}: cannot read: "), message


def test_no_configured_path_is_the_policy_shipped_with_the_package() -> None:
    assert load_policy(None) == load_policy(POLICY_FILE)
    assert default_policy_path().read_bytes() == POLICY_FILE.read_bytes()


@pytest.mark.parametrize(
    ("value", "problem"),
    [("nan", "finite number"), ("inf", "finite number"), ('"60"', "valid number"), ("true", "valid number")],
)
def test_a_limit_that_is_not_a_plain_finite_number_is_refused(tmp_path: Path, value: str, problem: str) -> None:
    """nan or inf would make every comparison false and silently switch the walk-away condition off."""
    lines = [*PREAMBLE, "[terms.x]", "public = 45", f"limit = {value}", 'worse = "higher"']
    message = refusal(write(tmp_path, lines))
    assert f":{line_of(lines, f'limit = {value}')}: terms.x.limit: " in message
    assert problem in message


def test_an_error_on_the_last_line_names_that_line(tmp_path: Path) -> None:
    lines = [*PREAMBLE, *PAYMENT_TERMS, '[terms.x]', "public = 45", "limit = 60", 'worse = "higher"', 'description = "abc']
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert refusal(path).startswith(f"{path}:{len(lines)}: not valid TOML")


def test_lines_inside_a_multiline_string_are_not_taken_for_keys(tmp_path: Path) -> None:
    lines = [*PREAMBLE, "[terms.x]", "public = 45", 'description = """', "limit = 3", '"""', 'worse = "higher"']
    message = refusal(write(tmp_path, lines))
    assert f":{line_of(lines, '[terms.x]')}: terms.x.limit: Field required" in message


def test_a_dotted_key_is_named_at_its_own_line(tmp_path: Path) -> None:
    bad = 'x.worse = "sideways"'
    lines = [*PREAMBLE, "[terms]", "x.public = 45", "x.limit = 60", bad]
    assert f":{line_of(lines, bad)}: terms.x.worse: " in refusal(write(tmp_path, lines))


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b'[terms.x]\npublic = 45\nlimit = 60\nworse = "higher"\ndescription = "caf\xe9"\n')
    assert refusal(path).startswith(f"{path}:5: not UTF-8")


def test_the_sample_policy_states_each_terms_range() -> None:
    terms = load_policy(POLICY_FILE).terms
    ranges = {name: (term.min, term.max) for name, term in terms.items()}
    assert ranges == {
        "payment_terms_days": (0, 365),
        "discount_percent": (0, 100),
        "contract_length_months": (1, 120),
        "response_time_hours": (0, 720),
    }


def test_a_terms_range_is_optional_on_either_side(tmp_path: Path) -> None:
    lines = [*PREAMBLE, *PAYMENT_TERMS[:-1], "min = 0", ""]
    payment = load_policy(write(tmp_path, lines)).terms["payment_terms_days"]
    assert (payment.min, payment.max) == (0, None)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [(["min = 10", "max = 5"], "min 10 must not be above max 5"), (["max = 50"], "limit 60 must be within min and max"), (["min = 50"], "public 45 must be within min and max")],
)
def test_a_range_that_excludes_the_terms_own_positions_is_refused(tmp_path: Path, extra: list[str], problem: str) -> None:
    lines = [*PREAMBLE, *PAYMENT_TERMS[:-1], *extra, ""]
    path = write(tmp_path, lines)
    message = refusal(path)
    assert message.startswith(f"{path}:{line_of(lines, '[terms.payment_terms_days]')}: terms.payment_terms_days: "), message
    assert problem in message
