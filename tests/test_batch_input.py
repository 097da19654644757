"""Batch input (``evolink_async.batch.input``): parsing and validating prompts files."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Literal

import pytest

from evolink_async.batch import BatchInputError, LineProblem, load_prompts, parse_prompts
from evolink_async.batch.input import duplicate_lines


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_lines_keep_their_file_line_numbers_and_skip_blank_and_comment_lines() -> None:
    lines = parse_prompts(["# header", "a cat", "", "   ", "#x", "  a dog  "], fmt="txt")
    assert [(2, "a cat"), (6, "a dog")] == [(b.line, b.prompt) for b in lines]


def test_defaults_apply_only_to_lines_that_do_not_set_them() -> None:
    text = [
        '{"prompt": "a", "duration": 12}',
        '{"prompt": "b", "aspect_ratio": "9:16"}',
        '{"prompt": "c", "duration": null}',
    ]
    lines = parse_prompts(text, fmt="jsonl", duration=8, aspect_ratio="16:9")
    got = [(b.request.duration, b.request.aspect_ratio) for b in lines]
    assert [(12, "16:9"), (8, "9:16"), (8, "16:9")] == got


def test_every_bad_line_is_reported_with_its_line_number_and_field() -> None:
    text = [
        '{"prompt": "fine"}',
        '{"prompt": "broken",',
        '{"prompt": "five seconds", "duration": 5}',
        json.dumps({"prompt": "x" * 6000}),
        '{"prompt": "hook", "callback_url": "http://example.com/hook"}',
        '["not", "an", "object"]',
    ]
    with pytest.raises(BatchInputError) as info:
        parse_prompts(text, fmt="jsonl", source="p.jsonl")
    problems = info.value.problems
    assert [2, 3, 4, 5, 6] == [p.line for p in problems]
    assert [None, "duration", "prompt", "callback_url", None] == [p.field for p in problems]
    message = str(info.value)
    assert message.startswith("p.jsonl: 5 invalid lines, nothing was submitted")
    assert "line 3: duration: must be one of 4, 8, 12 seconds" in message
    assert "line 4: prompt: must be at most 5000 characters" in message
    assert "line 5: callback_url: must use https" in message
    assert "line 2: invalid JSON" in message


def test_an_input_without_prompts_is_an_error() -> None:
    with pytest.raises(BatchInputError, match="no prompts"):
        parse_prompts(["# only a comment", ""], fmt="txt")


def test_load_prompts_picks_the_format_from_the_name_or_the_first_line(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "p.jsonl", '{"prompt": "a", "duration": 8}\n')
    txt = write(tmp_path / "p.txt", '{"prompt": "taken literally"}\n')
    assert 8 == load_prompts(jsonl)[0].request.duration
    assert '{"prompt": "taken literally"}' == load_prompts(txt)[0].prompt
    stream = io.StringIO('# c\n{"prompt": "from a stream", "duration": 12}\n')
    assert [(2, 12)] == [(b.line, b.request.duration) for b in load_prompts(stream)]


def test_a_missing_prompts_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="cannot read it"):
        load_prompts(tmp_path / "nope.txt")


def test_line_problem_reads_as_line_field_rule() -> None:
    assert "line 3: duration: bad" == str(LineProblem(3, "duration", "bad"))


# -- hostile input (attacks 9 and 11 of the idempotency issue) --------------------------------


@pytest.mark.parametrize(
    ("fmt", "line", "field", "rule"),
    [
        ("txt", "a prompt\x00", None, "control character U+0000 at column 9"),
        ("txt", "\x00", None, "control character U+0000 at column 1"),
        ("txt", "bell \x07 here", None, "control character U+0007 at column 6"),
        ("txt", "c1 \x85 control", None, "control character U+0085 at column 4"),
        ("jsonl", '{"prompt": "\\u0000"}', "prompt", "control character U+0000"),
        ("jsonl", '{"prompt": "ok", "image_urls": ["\\u001b"]}', "image_urls[0]", "U+001B"),
        ("jsonl", '{"prompt": "raw \x01 byte"}', None, "control character U+0001"),
        ("jsonl", '{"prompt": "a", "prompt": "b"}', "prompt", "duplicate key 'prompt'"),
        ("jsonl", '{"prompt": "a", "x": {"k": 1, "k": 2}}', "k", "duplicate key 'k'"),
        ("jsonl", '{"prompt": "a", "x": ' + "[" * 33 + "]" * 33 + "}", None, "deeper than 32"),
        ("jsonl", "[" * 200_000 + "]" * 200_000, None, "nested deeper than 32 levels"),
        ("jsonl", '{"a": ' * 100_000 + "1" + "}" * 100_000, None, "nested deeper than 32"),
    ],
    ids=[
        "txt-nul-at-end",
        "txt-only-nul",
        "txt-bell",
        "txt-c1",
        "json-escaped-nul",
        "escape-in-a-list",
        "raw-control-in-json",
        "duplicate-key",
        "nested-duplicate-key",
        "33-levels",
        "200k-arrays",
        "100k-objects",
    ],
)
def test_hostile_lines_are_refused_naming_line_field_and_rule(
    fmt: Literal["txt", "jsonl"], line: str, field: str | None, rule: str
) -> None:
    with pytest.raises(BatchInputError) as info:
        parse_prompts(["# header", line], fmt=fmt)

    [problem] = info.value.problems
    assert (2, field) == (problem.line, problem.field)
    assert rule in problem.message


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "tab\\there\\nand a newline\\r\\n"}',
        '{"prompt": "x", "model": "a-future-model", "a": [[[[1]]]]}',
    ],
)
def test_tabs_newlines_and_sane_nesting_inside_json_are_accepted(text: str) -> None:
    [line] = parse_prompts([text], fmt="jsonl")
    assert line.line == 1


def test_a_tab_in_a_txt_prompt_is_accepted() -> None:
    assert "a\tb" == parse_prompts(["a\tb"], fmt="txt")[0].prompt


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_refused_clearly(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes("a cat\na dog\n".encode(codec))

    with pytest.raises(BatchInputError, match="UTF-16 without a byte-order mark") as info:
        load_prompts(path)
    assert () == info.value.problems


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_a_bom_is_decoded(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "p.jsonl"
    bom = "" if codec == "utf-16" else "\ufeff"
    path.write_bytes((bom + '{"prompt": "un chat été"}\n{"prompt": "b"}\n').encode(codec))

    assert ["un chat été", "b"] == [line.prompt for line in load_prompts(path)]


def test_utf16_text_on_a_stream_is_refused() -> None:
    stream = io.StringIO("a\x00 \x00c\x00a\x00t\x00\n\x00")
    with pytest.raises(BatchInputError, match="UTF-16"):
        load_prompts(stream)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["a", "b", "c"], ()),
        (["a", "b", "a", "a", "# c", "b"], ((1, 3, 4), (2, 6))),
        (['{"prompt": "a", "duration": 8}', '{"duration": 8, "prompt": "a"}'], ((1, 2),)),
        (['{"prompt": "a"}', '{"prompt": "a", "duration": 12}'], ()),
    ],
    ids=["none", "two-groups", "same-request-other-key-order", "other-duration"],
)
def test_duplicate_requests_are_found_by_line(
    rows: list[str], expected: tuple[tuple[int, ...], ...]
) -> None:
    fmt: Literal["txt", "jsonl"] = "jsonl" if rows[0].startswith("{") else "txt"
    assert expected == duplicate_lines(parse_prompts(rows, fmt=fmt, duration=8))
