"""Values in listings read as JSON, and a number reads the same wherever it is shown."""

from __future__ import annotations

from dealflow.terminal import value_text


def test_values_read_as_json_not_python_reprs() -> None:
    assert [value_text(v) for v in (None, False, True, [1, "a"])] == ["null", "false", "true", '[1, "a"]']
    assert value_text({"term": "payment_terms_days", "limit": 60.0}) == '{"term": "payment_terms_days", "limit": 60}'


def test_integral_floats_read_as_integers_and_others_keep_their_fraction() -> None:
    assert [value_text(v) for v in (60.0, 60, 60.5, [45.0])] == ["60", "60", "60.5", "[45]"]


def test_strings_are_shown_as_written_but_printable() -> None:
    assert value_text("Acme [bold]") == "Acme [bold]"
    assert value_text("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert value_text({"reason": "line\nbreak"}) == '{"reason": "line\\nbreak"}'
