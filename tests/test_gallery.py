"""The gallery: ``index.html`` from the manifest (pure page builder, reading the manifest, the
``gallery`` command, and ``batch`` writing it when its job ends)."""

from __future__ import annotations

import json
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_support import (
    KEY,
    read_manifest,
    service_args,
    sim_fixture,  # noqa: F401 - the ``sim`` fixture
    write_prompts,
)

from evolink_async import testing
from evolink_async.batch import (
    GALLERY_FILENAME,
    MANIFEST_FILENAME,
    GalleryError,
    ManifestEntry,
    render_gallery,
)
from evolink_async.batch import (
    read_manifest as read_entries,
)
from evolink_async.cli import main
from evolink_async.testing import DEFAULT_API_KEY, Simulator


def entry(line: int, status: str = "completed", **fields: object) -> ManifestEntry:
    base: dict[str, object] = {
        "line": line,
        "prompt": f"prompt {line}",
        "status": status,
        "task_id": f"task-{line}",
        "video": f"{line:05d}-task-{line}.mp4" if status == "completed" else None,
        "url": None,
        "error": None,
        "attempts": 1,
        "credits": 2.5 if status == "completed" else 0.0,
    }
    base.update(fields)
    return ManifestEntry(**base)  # type: ignore[arg-type]


class Page(HTMLParser):
    """The parts of a gallery page the tests look at."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.articles: list[dict[str, str | None]] = []
        self.videos: list[str | None] = []
        self.scripts = 0
        self.external: list[str] = []
        self.texts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "article":
            self.articles.append(found)
        if tag == "video":
            self.videos.append(found.get("src"))
        if tag == "script":
            self.scripts += 1
            if "src" in found:
                self.external.append(str(found["src"]))
        if tag == "link":
            self.external.append(str(found.get("href")))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


def test_every_entry_is_an_article_in_order_with_its_status_and_task() -> None:
    entries = [
        entry(1),
        entry(3, "failed", error={"code": "content_policy_violation", "message": "refused"}),
        entry(4, "skipped", task_id=None, error={"code": "budget", "message": "no credits"}),
        entry(7, "unknown", credits=2.5, error={"code": "maybe_created", "message": "sent?"}),
    ]

    page = Page(render_gallery(entries))

    assert [
        ("line-1", "completed", "task-1"),
        ("line-3", "failed", "task-3"),
        ("line-4", "skipped", ""),
        ("line-7", "unknown", "task-7"),
    ] == [(a["id"], a["data-status"], a["data-task"]) for a in page.articles]
    assert ["00001-task-1.mp4#t=0.1"] == page.videos
    for needle in ("content_policy_violation: refused", "budget: no credits", "maybe_created"):
        assert needle in page.text
    assert "4 lines: 1 completed, 1 failed, 1 unknown, 1 skipped; 5 credits." in page.text


def test_prompts_and_reasons_are_escaped_and_the_page_loads_nothing_from_outside() -> None:
    hostile = '</p><script>alert("x")</script><img src=http://evil.example/x>'
    entries = [
        entry(1, prompt=hostile),
        entry(2, "failed", prompt="ok", error={"code": "<b>", "message": hostile}),
    ]

    html = render_gallery(entries, title="<script>t</script>")
    page = Page(html)

    assert "<script>alert" not in html
    assert "<img" not in html
    assert hostile in page.text  # shown as text, exactly
    assert 1 == page.scripts  # the page's own filter, inline
    assert [] == page.external


@pytest.mark.parametrize(
    ("video", "src"),
    [
        ("00001-task-a.mp4", "00001-task-a.mp4#t=0.1"),
        ("javascript:alert(1)", "javascript%3Aalert%281%29#t=0.1"),
        ("/etc/passwd", "etc/passwd#t=0.1"),
        ('a" onerror="x.mp4', "a%22%20onerror%3D%22x.mp4#t=0.1"),
    ],
    ids=["clip", "scheme", "absolute", "quote"],
)
def test_a_video_is_always_a_relative_link(video: str, src: str) -> None:
    assert [src] == Page(render_gallery([entry(1, video=video)])).videos


def test_a_completed_line_without_a_file_links_its_result_only_over_http() -> None:
    entries = [
        entry(1, video=None, url="https://files.example/v.mp4?sig=1"),
        entry(2, video=None, url="javascript:alert(1)"),
    ]

    html = render_gallery(entries)

    assert 'href="https://files.example/v.mp4?sig=1"' in html
    assert "javascript:" not in html
    assert [] == Page(html).videos


def test_read_manifest_ignores_keys_it_does_not_know_and_names_a_bad_line(
    tmp_path: Path,
) -> None:
    good = {**entry(1).to_json(), "reason": "new key"}
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(good) + "\n\n", encoding="utf-8")
    assert [entry(1)] == read_entries(tmp_path)

    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(good) + "\n[1]\n", encoding="utf-8")
    with pytest.raises(GalleryError, match=r"line 2: not a manifest entry"):
        read_entries(tmp_path)


def test_the_gallery_command_rebuilds_the_page_from_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [entry(1), entry(2, "failed", error={"code": "x", "message": "y"})]
    lines = "".join(json.dumps(e.to_json()) + "\n" for e in entries)
    (tmp_path / MANIFEST_FILENAME).write_text(lines, encoding="utf-8")

    assert 0 == main(["gallery", str(tmp_path), "--title", "My clips"])

    html = (tmp_path / GALLERY_FILENAME).read_text(encoding="utf-8")
    assert render_gallery(entries, title="My clips") == html
    assert f"{tmp_path / GALLERY_FILENAME}\n" == capsys.readouterr().out
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_the_gallery_command_without_a_manifest_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["gallery", str(tmp_path)])
    assert "manifest.jsonl" in capsys.readouterr().err
    assert not (tmp_path / GALLERY_FILENAME).exists()


def test_batch_writes_the_gallery_of_its_manifest(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", ["one <script>", "two & three"])
    out = tmp_path / "clips"

    assert 0 == main(["batch", str(source), "--out", str(out), *service_args(sim)])

    html = (out / GALLERY_FILENAME).read_text(encoding="utf-8")
    page = Page(html)
    manifest = read_manifest(out)
    assert [f"line-{e['line']}" for e in manifest] == [a["id"] for a in page.articles]
    assert [f"{e['video']}#t=0.1" for e in manifest] == page.videos
    assert "one &lt;script&gt;" in html
    assert KEY not in html
    assert f"gallery: {out / GALLERY_FILENAME}" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_gallery_never_holds_the_api_key_or_the_callback_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "gallery-test-callback-secret-0123456789"
    monkeypatch.setenv("EVOLINK_CALLBACK_SECRET", secret)
    started: list[Simulator] = []

    class Recorded(Simulator):  # the embedded simulator, kept to read its key
        async def start(self) -> Simulator:
            started.append(self)
            return await super().start()

    monkeypatch.setattr(testing, "Simulator", Recorded)
    source = write_prompts(tmp_path / "p.txt", ["a", "b", "c"])
    out = tmp_path / "clips"
    port = _free_port()
    hook = ["--callback-url", f"http://127.0.0.1:{port}/cb", "--listen", f"127.0.0.1:{port}"]

    assert 0 == main(["batch", str(source), "--out", str(out), "--simulate", "-q", *hook])

    [embedded] = started
    assert DEFAULT_API_KEY == embedded.api_key
    page = (out / GALLERY_FILENAME).read_text(encoding="utf-8")
    assert 3 == len(Page(page).articles)
    assert secret not in page
    assert embedded.api_key not in page
