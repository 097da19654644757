"""Batch input (``evolink_async.batch.input``): parsing and validating prompts files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from evolink_async.batch import BatchInputError, LineProblem, load_prompts, parse_prompts


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
