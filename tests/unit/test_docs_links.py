"""Every relative link of README.md and docs/*.md leads somewhere: the file exists, and
an anchor names a heading of the target file (by GitHub's anchor rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import anchors, broken_links, documents, headings, links, slug


def test_every_relative_link_resolves() -> None:
    problems = [problem for doc in documents() if doc.exists() for problem in broken_links(doc)]
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_the_readme_is_checked() -> None:
    assert documents()[0].name == "README.md" and documents()[0].exists()


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Saga steps and compensation", "saga-steps-and-compensation"),
        ("`sagactl`", "sagactl"),
        ("Retrying with an Idempotency-Key", "retrying-with-an-idempotency-key"),
        ("A customer's orders", "a-customers-orders"),
        ("Sagas (orchestrator)", "sagas-orchestrator"),
        ("The `stock_level` table: 1.0 / 2.0", "the-stock_level-table-10--20"),
        ("  Trailing  spaces  ", "trailing--spaces"),
        ("See [the runner](scripts/run-local.sh)", "see-the-runner"),
        ("**Bold** move", "bold-move"),
    ],
)
def test_slug_follows_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_duplicate_headings_are_numbered_and_code_is_no_heading() -> None:
    text = "# Setup\n\n## Setup\n\n```bash\n# Setup\n```\n\n### Setup\n\nSetup-1\n=======\n"
    assert headings(text) == [(1, "Setup"), (3, "Setup"), (9, "Setup"), (11, "Setup-1")]
    # github-slugger: the third "Setup" would be setup-2, and a heading that is literally
    # "Setup-1" after setup-1 is taken becomes setup-1-1.
    assert anchors(text) == {"setup", "setup-1", "setup-2", "setup-1-1"}


def test_links_in_code_are_not_links() -> None:
    text = (
        "See [a](a.md) and `[b](b.md)`, and ``[c](c.md)`` too.\n"
        "```\n[d](d.md)\n```\n"
        'A [wrapped\nlink](e.md#x) and [f](https://example.com) and [g](#g "title").\n'
        "`code that wraps\n[h](h.md)`\n"
        "[ref]: i.md\n"
    )
    assert [(link.line, link.target) for link in links(text)] == [
        (1, "a.md"),
        (5, "e.md#x"),
        (6, "https://example.com"),
        (6, "#g"),
        (9, "i.md"),
    ]


def test_broken_links_name_file_line_and_problem(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## The `sagactl` tool\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n\n"
        "[ok](docs/guide.md#the-sagactl-tool) [ok](#top) [ok](docs/) [web](http://x/#nope)\n"
        "[bad file](docs/missing.md)\n"
        "[bad anchor](docs/guide.md#the-sagactl-tool-1)\n"
        "[bad own anchor](#bottom)\n"
        "[mail](mailto:someone@example.com)\n"
    )
    assert broken_links(readme, root=tmp_path) == [
        "README.md:4: (docs/missing.md) no such file docs/missing.md",
        "README.md:5: (docs/guide.md#the-sagactl-tool-1) no heading with anchor "
        "#the-sagactl-tool-1 in guide.md",
        "README.md:6: (#bottom) no heading with anchor #bottom in README.md",
    ]
