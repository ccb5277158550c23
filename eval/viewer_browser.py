"""Open a viewer page in headless Chromium: console errors, checks in the page, a screenshot.

    python -m eval.viewer_browser reports/debate.html --screenshot docs/viewer.png [--expand] [--select 3]

Chromium is driven over the DevTools protocol (a websocket through aiohttp, which the engine already
needs), so no browser-automation package is required; Debian's `chromium` package is enough
(`scripts/setup.sh` installs it where apt-get runs as root). The exit status is 1 when the page logged
an error, an uncaught exception or opened a dialog (a script that should not have run).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium could not be started or driven; the message says what happened."""


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM when set, else the first of the usual names on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((found for found in map(shutil.which, CHROMIUM_NAMES) if found), None)


class HeadlessChromium:
    """One headless Chromium with one page, driven over the DevTools protocol (`async with`)."""

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000, timeout_s: float = 60.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError(f"no Chromium binary found (tried {', '.join(CHROMIUM_NAMES)}; set $CHROMIUM)")
        self.width, self.height, self.timeout_s = width, height, timeout_s
        self.errors: list[str] = []  # console errors, uncaught exceptions, error log entries (CSP, loading)
        self.dialogs: list[str] = []  # alert/confirm/prompt opened by the page
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: dict[str, list[asyncio.Future]] = {}
        self._process: subprocess.Popen | None = None
        self._profile: tempfile.TemporaryDirectory | None = None
        self._session: Any = None
        self._socket: Any = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> HeadlessChromium:
        import aiohttp

        self._profile = tempfile.TemporaryDirectory(prefix="viewer-chromium-")
        profile = Path(self._profile.name)
        log = (profile / "chromium.log").open("wb")
        # Port 0: Chromium picks a free port and writes it to DevToolsActivePort in the profile folder.
        self._process = subprocess.Popen(
            [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        try:
            port = await self._wait_for_port(profile)
            self._session = aiohttp.ClientSession()
            target = await self._page_target(port)
            self._socket = await self._session.ws_connect(target, max_msg_size=0, timeout=aiohttp.ClientWSTimeout())
            self._reader = asyncio.create_task(self._read())
            for domain in ("Page", "Runtime", "Log"):
                await self.send(f"{domain}.enable")
            await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                            deviceScaleFactor=1, mobile=False)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._profile is not None:
            self._profile.cleanup()

    async def _wait_for_port(self, profile: Path) -> int:
        marker = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = (profile / "chromium.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise BrowserError(f"{self.binary} exited with status {self._process.returncode}: "
                                   + " | ".join(tail))
            if marker.is_file():
                first = marker.read_text().splitlines()
                if first and first[0].strip().isdigit():
                    return int(first[0])
            await asyncio.sleep(0.1)
        raise BrowserError(f"{self.binary} did not open its DevTools port within {self.timeout_s:.0f}s")

    async def _page_target(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json(content_type=None)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            await asyncio.sleep(0.1)
        raise BrowserError("Chromium opened no page target")

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(BrowserError(f"DevTools error: {data['error'].get('message')}"))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            self._on_event(data.get("method", ""), data.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.errors.append("console: " + " ".join(args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(f"log ({params['entry'].get('source')}): {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{params.get('type')}: {params.get('message')}")
            asyncio.get_running_loop().create_task(self.send("Page.handleJavaScriptDialog", accept=True))
        for future in self._events.pop(method, []):
            if not future.done():
                future.set_result(params)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result."""
        number = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        await self._socket.send_str(json.dumps({"id": number, "method": method, "params": params}))
        return await asyncio.wait_for(future, self.timeout_s)

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        loaded = asyncio.get_running_loop().create_future()
        self._events.setdefault("Page.loadEventFired", []).append(loaded)
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        await asyncio.wait_for(loaded, self.timeout_s)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r} threw: "
                               f"{details.get('exception', {}).get('description') or details.get('text')}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float | None = None) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: str | Path) -> Path:
        """A PNG of the viewport, written to `path`."""
        result = await self.send("Page.captureScreenshot", format="png")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path


async def open_viewer(browser: HeadlessChromium, page: str | Path) -> float:
    """Open a viewer page and wait until it has drawn; seconds from navigation to drawn."""
    start = time.perf_counter()
    await browser.open(Path(page).resolve().as_uri())
    await browser.wait_for("document.body.dataset.ready === '1'")
    return time.perf_counter() - start


async def _run(args: argparse.Namespace) -> int:
    async with HeadlessChromium(width=args.width, height=args.height) as browser:
        seconds = await open_viewer(browser, args.page)
        if args.select is not None:
            await browser.evaluate(f"document.querySelector('.qitem[data-index=\"{args.select}\"]').click()")
        if args.expand:
            await browser.evaluate("document.querySelectorAll('#detail .turn details').forEach(d => d.open = true)")
        count = await browser.evaluate("(document.getElementById('count') || {}).textContent || 'no question count'")
        if args.screenshot:
            await browser.screenshot(args.screenshot)
        print(f"{args.page}: drawn in {seconds:.2f}s, {count}"
              + (f", screenshot {args.screenshot}" if args.screenshot else ""))
        for problem in browser.errors + [f"dialog {d}" for d in browser.dialogs]:
            print(f"page error: {problem}", file=sys.stderr)
        return 1 if browser.errors or browser.dialogs else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.viewer_browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="a page written by python -m eval.viewer")
    parser.add_argument("--screenshot", default=None, help="write a PNG of the window here")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
    parser.add_argument("--height", type=int, default=1000, help="window height in pixels")
    parser.add_argument("--select", type=int, default=None, help="show this question (its index in the list data)")
    parser.add_argument("--expand", action="store_true", help="open every turn's text before the screenshot")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.page).is_file():
        print(f"error: {args.page}: no such file", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except BrowserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
