"""Reading the README's walkthrough for tests/e2e/test_walkthrough.py: the section, the
shell blocks with the output shown for them, stack starts, and the output comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import (
    failure_rates,
    is_subsequence,
    json_values,
    mismatches,
    ordered_products,
    rewrite_urls,
    section,
    stack_start_env,
    status_lines,
    steps,
    walkthrough,
)

FENCE = "```"

SAMPLE = f"""# Title

## Walkthrough

Intro.

{FENCE}bash
ORDER_ID=$(curl -s -X POST http://localhost:8001/api/v1/orders \\
  -d '{{"product_id": "550e8400-e29b-41d4-a716-446655440003"}}')
{FENCE}

Some prose between a command and its output.

{FENCE}text
HTTP/1.1 201 Created
{{"success": true, "data": {{"status": "pending"}}}}
{FENCE}

{FENCE}bash
# a comment first
SHIPPING_FAILURE_RATE=1 make run
{FENCE}

{FENCE}text
runner output, not compared
{FENCE}

{FENCE}bash
curl -s http://127.0.0.1:8004/api/v1/health
{FENCE}

{FENCE}bash
## not a heading: a comment in a code block
echo done
{FENCE}

{FENCE}text
done
{FENCE}

{FENCE}text
a second output block is no one's
{FENCE}

## Next section

{FENCE}bash
echo not part of the walkthrough
{FENCE}
"""


def test_the_section_ends_at_the_next_second_level_heading_outside_code() -> None:
    text, start = section(SAMPLE)
    assert start == 3
    assert text.startswith("## Walkthrough\n")
    assert "## not a heading" in text
    assert "Next section" not in text and "not part of" not in text
    with pytest.raises(ValueError, match="no heading"):
        section("# Only a title\n")


def test_blocks_pair_with_the_output_that_follows_them() -> None:
    text, start = section(SAMPLE)
    found = steps(text, start)
    assert [s.title for s in found] == [
        "ORDER_ID=$(curl -s -X POST http://localhost:8001/api/v1/orders \\",
        "SHIPPING_FAILURE_RATE=1 make run",
        "curl -s http://127.0.0.1:8004/api/v1/health",
        "echo done",
    ]
    assert found[0].line == 7 and SAMPLE.splitlines()[6] == f"{FENCE}bash"
    assert found[0].expected is not None and found[0].expected.startswith("HTTP/1.1 201")
    assert found[1].restart == {"SHIPPING_FAILURE_RATE": "1"}
    assert found[1].expected == "runner output, not compared"
    assert found[2].expected is None and found[2].restart is None
    assert found[3].expected == "done"
    assert ordered_products([s.command for s in found]) == ["550e8400-e29b-41d4-a716-446655440003"]


def test_a_walkthrough_in_a_file(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(SAMPLE)
    assert [s.restart is not None for s in walkthrough(readme)] == [False, True, False, False]


def test_the_repository_readme_has_a_walkthrough_with_output_to_compare() -> None:
    found = walkthrough()
    assert found, "README.md has no shell blocks under '## Walkthrough'"
    assert any(s.expected is not None and s.restart is None for s in found)


@pytest.mark.parametrize(
    ("command", "env"),
    [
        ("SHIPPING_FAILURE_RATE=1 make run", {"SHIPPING_FAILURE_RATE": "1"}),
        ("make run", {}),
        ("bash scripts/run-local.sh", {}),
        ("./scripts/run-local.sh --env PAYMENT_FAILURE_RATE=0.5", {"PAYMENT_FAILURE_RATE": "0.5"}),
        (
            "bash scripts/run-local.sh --env SHIPPING_FAILURE_RATE=1 "
            "--env=PAYMENT_REFUND_FAILURE_RATE=1 --timeout 60",
            {"SHIPPING_FAILURE_RATE": "1", "PAYMENT_REFUND_FAILURE_RATE": "1"},
        ),
        (
            'make run ARGS="--env NOTIFICATION_FAILURE_RATE=1 --services order_service"',
            {"NOTIFICATION_FAILURE_RATE": "1"},
        ),
        (
            "export PAYMENT_FAILURE_RATE=1\nenv SHIPPING_FAILURE_RATE=0.25 \\\n  make run",
            {"PAYMENT_FAILURE_RATE": "1", "SHIPPING_FAILURE_RATE": "0.25"},
        ),
        ("curl -s http://localhost:8001/api/v1/health", None),
        ("export ADMIN_API_KEY=secret   # before `make run`", None),
        ("# or: bash scripts/run-local.sh --env SHIPPING_FAILURE_RATE=1\necho hi", None),
    ],
)
def test_stack_starts_and_their_environment(command: str, env: dict[str, str] | None) -> None:
    assert stack_start_env(command) == env


def test_failure_rates_default_to_zero() -> None:
    assert failure_rates({"SHIPPING_FAILURE_RATE": "1"}) == {
        "payment": 0.0,
        "shipping": 1.0,
        "notification": 0.0,
        "refund": 0.0,
    }
    assert failure_rates({"PAYMENT_FAILURE_RATE": "0.3", "LOG_LEVEL": "DEBUG"})["payment"] == 0.3


def test_urls_of_the_default_ports_are_rewritten() -> None:
    urls = {8001: "http://127.0.0.1:41001", 8004: "http://127.0.0.1:41004/"}
    command = (
        "curl http://localhost:8001/api/v1/orders http://127.0.0.1:8004/x "
        "http://localhost:80010/y http://localhost:15672/ https://localhost:8001/z"
    )
    assert rewrite_urls(command, urls) == (
        "curl http://127.0.0.1:41001/api/v1/orders http://127.0.0.1:41004/x "
        "http://localhost:80010/y http://localhost:15672/ https://localhost:8001/z"
    )


def test_status_lines_and_json_values() -> None:
    output = (
        "HTTP/1.1 201 Created\r\ndate: x\r\n\r\n"
        '{\n    "success": true,\n    "status": "pending",\n'
        '    "steps": { … "status": "completed" … },\n    "status_history": [],\n'
        '    "error": {"success": false, "status": "a \\" quote"}\n}\n'
        "HTTP/1.1 404 Not Found\n"
    )
    assert status_lines(output) == ["HTTP/1.1 201 Created", "HTTP/1.1 404 Not Found"]
    assert json_values(output, "status") == ["pending", "completed", 'a \\" quote']
    assert json_values(output, "success") == ["true", "false"]


def test_subsequence() -> None:
    assert is_subsequence([], ["a"])
    assert is_subsequence(["a", "c"], ["a", "b", "c"])
    assert not is_subsequence(["c", "a"], ["a", "b", "c"])
    assert not is_subsequence(["a", "a"], ["a"])


def test_mismatches_compare_statuses_not_numbers() -> None:
    expected = 'HTTP/1.1 201 Created\n{"success": true, "stock": 49, "status": "completed"}'
    same = (
        'HTTP/1.1 201 Created\r\n{"success": true, "stock": 1048, "status": "pending", '
        '"status": "completed", "success": true}'
    )
    assert mismatches(expected, same) == []
    wrong = 'HTTP/1.1 409 Conflict\r\n{"success": false, "status": "failed"}'
    assert mismatches(expected, wrong) == [
        "HTTP status lines: expected ['HTTP/1.1 201 Created'] in this order, "
        "got ['HTTP/1.1 409 Conflict']",
        "\"status\" values: expected ['completed'] in this order, got ['failed']",
        "\"success\" values: expected ['true'] in this order, got ['false']",
    ]
