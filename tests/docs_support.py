"""Reading the project's Markdown: fenced blocks, headings and their GitHub anchors,
relative links, and the README's walkthrough (commands and the output shown for them).

Plain functions, shared by the link check (tests/unit/test_docs_links.py) and the
walkthrough run (tests/e2e/test_walkthrough.py)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
WALKTHROUGH_HEADING = "## Walkthrough"

# -- fenced code blocks --------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string's first word, its content, and the 1-based
    line numbers of its opening and closing fences."""

    lang: str
    body: str
    line: int
    end: int


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None or (match.group(1)[0] == "`" and "`" in match.group(2)):
            i += 1
            continue
        fence, info = match.group(1), match.group(2).strip()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(lang, "\n".join(lines[i + 1 : j]), i + 1, min(j, len(lines)) + 1))
        i = j + 1
    return blocks


def code_line_numbers(text: str) -> set[int]:
    """1-based numbers of the lines that belong to fenced code blocks, fences included."""
    return {n for b in fenced_blocks(text) for n in range(b.line, b.end + 1)}


def prose(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out; line and column
    positions are kept (every character that goes is replaced by a space)."""
    code = code_line_numbers(text)
    lines = text.split("\n")
    kept = "\n".join(
        " " * len(line) if n in code else line for n, line in enumerate(lines, start=1)
    )
    return _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), kept)


# A code span: a run of backticks, then anything up to the same run again, within one
# paragraph (a span may wrap onto the next line, but never across a blank line).
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)

# -- headings and anchors ------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ID = re.compile(r"<[a-zA-Z][^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before duplicates are numbered): the text as
    rendered (inline code and emphasis markers, link targets gone), lowercased, every
    character but letters, digits, spaces, hyphens and underscores removed, and every
    space turned into a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def headings(text: str) -> list[tuple[int, str]]:
    """(line, text) of every ATX and setext heading outside fenced code blocks."""
    code = code_line_numbers(text)
    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    for n, line in enumerate(lines, start=1):
        if n in code:
            continue
        atx = _ATX.match(line)
        if atx is not None:
            found.append((n, atx.group(2) or ""))
            continue
        previous = lines[n - 2] if n >= 2 else ""
        if (
            _SETEXT.match(line)
            and n - 1 not in code
            and previous.strip()
            and not _ATX.match(previous)
            and not _SETEXT.match(previous)
            and not previous.lstrip().startswith(("|", "-", "*", "+", ">"))
        ):
            found.append((n - 1, previous.strip()))
    return found


def anchors(text: str) -> set[str]:
    """Every anchor GitHub gives the document: one per heading, duplicates numbered `-1`,
    `-2`, ... (as github-slugger does), plus explicit `id`/`name` attributes of HTML tags."""
    occurrences: dict[str, int] = {}
    result: set[str] = set()
    for _, heading in headings(text):
        base = candidate = slug(heading)
        while candidate in occurrences:
            occurrences[base] += 1
            candidate = f"{base}-{occurrences[base]}"
        occurrences[candidate] = 0
        result.add(candidate)
    result.update(_HTML_ID.findall(prose(text)))
    return result


# -- links ---------------------------------------------------------------------------------

_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets allowed
    r"\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    line: int
    target: str


def links(text: str) -> list[Link]:
    """Link targets outside code, with the line each starts on."""
    masked = prose(text)
    found: list[Link] = []
    for pattern in (_INLINE_LINK, _REFERENCE_DEFINITION):
        for match in pattern.finditer(masked):
            target = match.group(1)
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append(Link(masked.count("\n", 0, match.start()) + 1, target))
    return sorted(found, key=lambda link: link.line)


def is_external(target: str) -> bool:
    """http(s):, mailto: and any other scheme; not a path in the repository."""
    return bool(_SCHEME.match(target)) or target.startswith("//")


def broken_links(markdown: Path, root: Path = REPO_ROOT) -> list[str]:
    """`file:line: [target] problem` for every relative link of the file that does not
    resolve: a missing file, or an anchor no heading of the target file has."""
    text = markdown.read_text(encoding="utf-8")
    try:
        shown = markdown.relative_to(root).as_posix()
    except ValueError:
        shown = markdown.name
    problems: list[str] = []
    own_anchors: set[str] | None = None
    for link in links(text):
        if is_external(link.target):
            continue
        path_part, _, anchor = link.target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        anchor = unquote(anchor)
        where = f"{shown}:{link.line}: ({link.target})"
        if path_part:
            base = root if path_part.startswith("/") else markdown.parent
            target = (base / path_part.lstrip("/")).resolve()
            if not target.exists():
                problems.append(f"{where} no such file {path_part}")
                continue
        else:
            target = markdown.resolve()
        if not anchor or target.is_dir() or target.suffix.lower() not in (".md", ".markdown"):
            continue
        if target == markdown.resolve():
            if own_anchors is None:
                own_anchors = anchors(text)
            known = own_anchors
        else:
            known = anchors(target.read_text(encoding="utf-8"))
        if anchor not in known:
            problems.append(f"{where} no heading with anchor #{anchor} in {target.name}")
    return problems


def documents(root: Path = REPO_ROOT) -> list[Path]:
    """README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# -- the walkthrough -----------------------------------------------------------------------

SHELL_LANGS = frozenset({"bash", "sh", "shell"})
OUTPUT_LANGS = frozenset({"text"})
# The chaos knobs a stack start can set, by environment variable.
KNOBS: dict[str, str] = {
    "PAYMENT_FAILURE_RATE": "payment",
    "SHIPPING_FAILURE_RATE": "shipping",
    "NOTIFICATION_FAILURE_RATE": "notification",
    "PAYMENT_REFUND_FAILURE_RATE": "refund",
}


def section(text: str, heading: str = WALKTHROUGH_HEADING) -> tuple[str, int]:
    """The lines from `heading` (a line of its own) up to the next heading of the same
    level, outside code blocks, and the 1-based line number the section starts on."""
    code = code_line_numbers(text)
    lines = text.splitlines()
    level = heading.split(" ", 1)[0] + " "
    start = next(
        (n for n, line in enumerate(lines, 1) if n not in code and line.strip() == heading),
        None,
    )
    if start is None:
        raise ValueError(f"no heading {heading!r}")
    end = next(
        (
            n
            for n in range(start + 1, len(lines) + 1)
            if n not in code and lines[n - 1].startswith(level)
        ),
        len(lines) + 1,
    )
    return "\n".join(lines[start - 1 : end - 1]), start


@dataclass(frozen=True)
class Step:
    """A shell block of the walkthrough and the output shown after it (None if none).

    `restart` is the environment the block starts the stack with when it is a stack start
    (`make run`, `scripts/run-local.sh`): such a block is not run."""

    command: str
    expected: str | None
    line: int
    restart: dict[str, str] | None = None

    @property
    def title(self) -> str:
        """The first command line, to name the block in a message."""
        for line in self.command.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                return line.strip()
        return self.command.strip()


def steps(text: str, first_line: int = 1) -> list[Step]:
    """The shell blocks of a Markdown text in order, each with the first output block that
    follows it before the next shell block. Line numbers are offset by `first_line`."""
    result: list[Step] = []
    paired = True
    for block in fenced_blocks(text):
        if block.lang in SHELL_LANGS:
            line = block.line + first_line - 1
            result.append(Step(block.body, None, line, stack_start_env(block.body)))
            paired = False
        elif block.lang in OUTPUT_LANGS and not paired:
            last = result[-1]
            result[-1] = Step(last.command, block.body, last.line, last.restart)
            paired = True
    return result


def walkthrough(readme: Path = README) -> list[Step]:
    text, start = section(readme.read_text(encoding="utf-8"))
    return steps(text, start)


_STARTS_STACK = re.compile(r"(?:^|[\s;&|(])(?:make\s+run\b|(?:\S*/)?run-local\.sh\b)")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _env_of(words: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE words, `--env KEY=VALUE`, `--env=KEY=VALUE` and `ARGS="..."` (make's
    way of passing options on), recursively."""
    env: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--env", "-e") and i + 1 < len(words):
            i += 1
            word = words[i]
        elif word.startswith("--env="):
            word = word[len("--env=") :]
        if _ASSIGNMENT.match(word):
            key, _, value = word.partition("=")
            if key == "ARGS":
                env.update(_env_of(_split(value)))
            else:
                env[key] = value
        i += 1
    return env


def stack_start_env(command: str) -> dict[str, str] | None:
    """The environment a shell block starts the stack with, or None if it starts none.

    A block starts the stack when one of its command lines (comments aside) runs
    `make run` or `scripts/run-local.sh`; the environment is every KEY=VALUE assignment of
    the block (`KEY=1 make run`, `export KEY=1`, `--env KEY=1`, `ARGS="--env KEY=1"`)."""
    env: dict[str, str] = {}
    starts = False
    for line in re.sub(r"\\\n", " ", command).splitlines():
        words = _split(line)
        if not words:
            continue
        if _STARTS_STACK.search(" ".join(words)):
            starts = True
        if words[0] in ("export", "env"):
            words = words[1:]
        env.update(_env_of(words))
    return env if starts else None


def failure_rates(env: Mapping[str, str]) -> dict[str, float]:
    """The chaos knobs (payment, shipping, notification, refund) a stack start sets; every
    knob it does not name is 0."""
    rates = dict.fromkeys(KNOBS.values(), 0.0)
    for key, value in env.items():
        if key in KNOBS:
            rates[KNOBS[key]] = float(value)
    return rates


_LOCAL_URL = re.compile(r"http://(?:localhost|127\.0\.0\.1):(\d+)(?!\d)")


def rewrite_urls(command: str, urls: Mapping[int, str]) -> str:
    """`http://localhost:<port>` and `http://127.0.0.1:<port>` of a known default port
    replaced by the base URL given for it (no trailing slash)."""

    def replace(match: re.Match[str]) -> str:
        port = int(match.group(1))
        return urls[port].rstrip("/") if port in urls else match.group(0)

    return _LOCAL_URL.sub(replace, command)


_PRODUCT_ID = re.compile(r'"product_id"\s*:\s*"([0-9a-fA-F-]{36})"')


def ordered_products(commands: Sequence[str]) -> list[str]:
    """Product ids the commands put in an order (`"product_id": "<uuid>"`), in order."""
    seen: dict[str, None] = {}
    for command in commands:
        for product in _PRODUCT_ID.findall(command):
            seen.setdefault(product.lower())
    return list(seen)


# -- comparing output ----------------------------------------------------------------------

_STATUS_LINE = re.compile(r"^(HTTP/[0-9.]+ [0-9]{3}(?: .*?)?)\s*$", re.MULTILINE)


def status_lines(text: str) -> list[str]:
    """HTTP status lines (`HTTP/1.1 201 Created`), carriage returns dropped."""
    return [line.strip() for line in _STATUS_LINE.findall(text.replace("\r", ""))]


def json_values(text: str, key: str) -> list[str]:
    """The values of `"key": <value>` in order: strings without their quotes, and the
    literals true, false, null and numbers as written."""
    pattern = rf'"{re.escape(key)}"\s*:\s*("(?:[^"\\]|\\.)*"|true|false|null|-?[0-9][0-9.eE+-]*)'
    return [v[1:-1] if v.startswith('"') else v for v in re.findall(pattern, text)]


def is_subsequence(needle: Sequence[str], haystack: Sequence[str]) -> bool:
    """Whether `needle` is `haystack` with some items left out (order kept)."""
    rest: Iterator[str] = iter(haystack)
    return all(any(item == other for other in rest) for item in needle)


def mismatches(expected: str, actual: str) -> list[str]:
    """What of the shown output the actual output lacks: its HTTP status lines in order,
    and its `"status"` and `"success"` values as subsequences of the actual ones."""
    problems: list[str] = []
    checks = [
        ("HTTP status lines", status_lines(expected), status_lines(actual)),
        ('"status" values', json_values(expected, "status"), json_values(actual, "status")),
        ('"success" values', json_values(expected, "success"), json_values(actual, "success")),
    ]
    for what, shown, got in checks:
        if not is_subsequence(shown, got):
            problems.append(f"{what}: expected {shown} in this order, got {got}")
    return problems
