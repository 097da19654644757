"""The command line's options (cli.parser): usage errors exit 2 before anything runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from evolink_async.cli import app, main, parser


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "p.txt"],  # --out is required
        ["batch", "p.txt", "--out", "x", "--concurrency", "0"],
        ["frobnicate"],
    ],
    ids=["no-out", "concurrency-0", "unknown-command"],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert 2 == main(argv)


def test_help_exits_0_and_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--help"])
    assert "batch" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["batch"], ["generate"]], ids=["top", "batch", "generate"])
def test_help_lists_the_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    for code, meaning in app_exit_codes():
        assert f"{code} {meaning}" in out


def app_exit_codes() -> list[tuple[int, str]]:
    return [
        (app.EXIT_OK, "all completed"),
        (app.EXIT_SOME_FAILED, "some not completed"),
        (app.EXIT_USAGE, "usage or input error"),
        (app.EXIT_UNREACHABLE, "the service could not be reached"),
        (app.EXIT_INTERRUPTED, "interrupted"),
    ]


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parser.positive_int, "3", 3),
        (parser.positive_float, "0.5", 0.5),
        (parser.non_negative_float, "0", 0.0),
    ],
)
def test_number_options_accept_their_range(
    parse: Callable[[str], float], text: str, expected: float
) -> None:
    assert expected == parse(text)


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parser.positive_int, "x", "not an integer: 'x'"),
        (parser.positive_int, "0", "must be at least 1, got 0"),
        (parser.positive_float, "x", "not a number: 'x'"),
        (parser.positive_float, "0", "must be greater than 0, got 0"),
        (parser.non_negative_float, "-1", "must not be negative, got -1"),
        (parser.non_negative_float, "nan", "must not be negative, got nan"),
    ],
)
def test_number_options_name_the_rule_they_break(
    parse: Callable[[str], float], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert message == str(info.value)
