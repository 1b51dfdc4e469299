"""Build the docs site and screenshot pages with headless Chromium, to check that they render.

Equations (KaTeX), tabs and API pages are drawn by the browser, so `mkdocs build --strict` alone
cannot tell whether they render; a screenshot can. Needs a `chromium` (or `chromium-browser`,
`google-chrome`) on PATH, e.g. Debian's `apt-get install chromium`. No network access is needed:
KaTeX and its fonts are vendored under docs/assets/katex.

Run:
    python scripts/docs_screenshots.py --out /tmp/shots theory/objective howto/backends reference/spec/calibration
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit(f"no headless browser found (tried {', '.join(BROWSERS)})")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", help="page paths under the site root, e.g. theory/objective")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--size", default="1280,2000", help="window width,height in pixels")
    args = parser.parse_args(argv)
    browser = find_browser()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as site:
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", site], cwd=ROOT, check=True)
        handler = functools.partial(_QuietHandler, directory=site)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for page in args.pages:
                png = args.out / ((page.strip("/") or "index").replace("/", "_") + ".png")
                path = page.strip("/")
                path = "" if path in ("", "index") else path + "/"
                url = f"http://127.0.0.1:{server.server_port}/{path}"
                subprocess.run(
                    [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     f"--window-size={args.size}", "--virtual-time-budget=5000", f"--screenshot={png}", url],
                    check=True, capture_output=True, timeout=120,
                )
                print(f"{url} -> {png}")
        finally:
            server.shutdown()


if __name__ == "__main__":
    main()
