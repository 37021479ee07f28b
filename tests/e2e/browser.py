"""The console in a real browser: Debian's Chromium driven by Playwright, one tab with
every error its console shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.async_api import ConsoleMessage, Page, expect

CHROMIUM = shutil.which("chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", "build/console-screenshots"))
TIMEOUT = 30_000  # ms: a saga under test settles well within it
expect.set_options(timeout=TIMEOUT)


class Console:
    """One browser tab on the console, with every error its console shows."""

    def __init__(self, page: Page, base: str, key: str | None = None) -> None:
        self.page = page
        self.base = base  # the console's address
        self.key = key  # what it signs in with, by the address (as the local runner does)
        self.errors: list[str] = []
        self.expected: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        for allowed in self.expected:
            if allowed in text:
                self.expected.remove(allowed)
                return
        self.errors.append(f"{text} ({message.location.get('url', '')})")

    def expect_refusal(self, status: int) -> None:
        """The browser logs every HTTP error answer as a console error, also one the page
        asked for and shows: the test that provokes it allows that one."""
        self.expected.append(f"the server responded with a status of {status}")

    async def open(self, hash_: str = "#/", key: bool = True) -> None:
        query = f"?key={self.key}" if key and self.key else ""
        await self.page.goto(f"{self.base}{query}{hash_}")

    async def go(self, hash_: str) -> None:
        """Open a page of the console and wait until that page is drawn: until then the
        page being left is still on screen, rows and buttons included. On the page
        already, it stays as it is."""
        before = await self.page.evaluate(
            "h => { const drawn = Number(document.getElementById('page').dataset.render || 0);"
            " if (location.hash === h) return drawn - 1;"
            " location.hash = h; return drawn; }",
            hash_,
        )
        await self.page.wait_for_function(
            "([h, before]) => { const page = document.getElementById('page');"
            " return page.dataset.view === h && Number(page.dataset.render) > before; }",
            arg=[hash_, before],
        )

    async def shot(self, name: str, full_page: bool = False) -> Path:
        """A screenshot in SCREENSHOTS: the window (the pictures docs/console.md shows),
        or the whole page (what each test ends with)."""
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path
