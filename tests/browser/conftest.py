"""Browser tests: the real app behind waitress, driven by Debian's Chromium through Playwright.

Fixtures (all built on the shared, database-parametrised ``app`` fixture, so every browser
test runs once on SQLite and once on PostgreSQL and sees the same rows as ``world``):

- ``live_server`` -> str: base URL (``http://127.0.0.1:<port>``) of the app served by waitress
  in a daemon thread; one server per database, shut down at the end of the session.
- ``browser`` (session) -> playwright Browser: /usr/bin/chromium, headless.
- ``page`` -> Page: fresh context (own cookies), desktop 1280x800, locale zh-CN, Asia/Shanghai,
  ``base_url`` = live_server (so ``page.goto("/login")`` works).
- ``phone_page`` -> Page: the same on a phone (390x844, is_mobile, has_touch).
- ``with_passwords`` (re-exported from tests/web): every world user gets ``PASSWORD``.

Every page fails its test (at teardown) if the app answered any request with a 5xx, if a page
threw an uncaught JavaScript error, or if it tried to load anything not served by the app (the app must
work on an intranet without CDNs; such requests are blocked).

Helpers: ``shot(page, name)``, ``login(page, base_url, username, password=PASSWORD)``,
``assert_chinese_glyphs(page, selector)``.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, service_missing
from tests.web.conftest import PASSWORD, with_passwords  # noqa: F401  (re-exported fixture)

CHROMIUM = os.environ.get("GRIDCASE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
DEFAULT_TIMEOUT_MS = 10_000
DATABASES = ("sqlite", "postgres")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real Chromium against a live server (deselect with -m 'not browser')")


def pytest_collection_modifyitems(config, items):
    """Everything under tests/browser is a browser test, marked or not."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"_report_{report.when}", report)  # lets the page fixtures see a failure
    return report


def _missing(what: str, reason: str):
    """service_missing, but its loud warning must not become an error under the project's
    ``filterwarnings = error`` (it is still recorded and shown in the warnings summary)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        service_missing(what, reason)


# --- the live server -------------------------------------------------------------------

@pytest.fixture(scope="session")
def live_server(app):
    """Serve the real app with waitress on a free port; yield its base URL."""
    import waitress
    from waitress import wasyncore

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4, ident="gridcase-test")
    base_url = f"http://127.0.0.1:{server.effective_port}"
    thread = threading.Thread(target=server.run, name=f"live-server-{server.effective_port}", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        # Close every socket from inside the server's own loop (no races on its map); the loop
        # then ends because its map is empty.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)


# --- the browser ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        _missing("Chromium", f"{CHROMIUM} not found; apt-get install -y chromium fonts-wqy-microhei")
    if not _chinese_font_families():
        _missing("a Chinese font", "fc-list :lang=zh lists none; apt-get install -y fonts-wqy-microhei")
    from playwright.sync_api import Error, sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            _missing("Chromium", str(exc).strip().splitlines()[0])
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


def _chinese_font_families() -> set[str]:
    if not shutil.which("fc-list"):
        return set()
    listing = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    return {name.strip() for line in listing.splitlines() for name in line.split(",") if name.strip()}


def _open_page(request, browser, base_url: str, options: dict):
    context = browser.new_context(base_url=base_url, locale="zh-CN", timezone_id="Asia/Shanghai", **options)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    problems: list[str] = []
    origin = urlsplit(base_url).netloc

    def only_the_app(route):
        url = route.request.url
        if urlsplit(url).netloc == origin or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            problems.append(f"blocked a request to {url} (pages must not load anything from outside the app)")
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"uncaught JavaScript error on {page.url}: {exc}"))
    # The app turns unexpected exceptions into a 500 page (app/errors.py), so watch the answers.
    context.on("response", lambda r: r.status >= 500 and problems.append(
        f"the app answered {r.status} to {r.request.method} {r.url} (see the log for the traceback)"))
    test, database = _page_info[id(page)] = (_test_name(request.node), _database_of(request))
    for stale in SCREENSHOTS.glob(f"{glob.escape(test)}-*-{database}.png"):  # from an earlier run of this test
        stale.unlink(missing_ok=True)
    return context, page, problems


def _close_page(request, context, page, problems):
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed and not page.is_closed():
        try:
            shot(page, "FAILED")
        except Exception:  # noqa: BLE001  (a dead page must not hide the real failure)
            pass
    _page_info.pop(id(page), None)
    context.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def page(request, browser, live_server):
    """A desktop page (1280x800, zh-CN) in its own browser context, base_url = live_server."""
    context, pg, problems = _open_page(request, browser, live_server, DESKTOP)
    yield pg
    _close_page(request, context, pg, problems)


@pytest.fixture
def phone_page(request, browser, live_server):
    """A phone page (390x844 CSS px, 3x, touch, zh-CN) in its own browser context."""
    context, pg, problems = _open_page(request, browser, live_server, PHONE)
    yield pg
    _close_page(request, context, pg, problems)


# --- screenshots -------------------------------------------------------------------------

_page_info: dict[int, tuple[str, str]] = {}


def _database_of(request) -> str:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") in DATABASES:
        return callspec.params["database_url"]
    app = request.getfixturevalue("app")
    return "postgres" if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else "sqlite"


def _test_name(node) -> str:
    name = getattr(node, "originalname", None) or node.name
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        others = [part for part in callspec.id.split("-") if part not in DATABASES]
        if others:
            name += "[" + "-".join(others) + "]"
    return _safe(name)


def _safe(text: str) -> str:
    return re.sub(r"[^\w.\[\]-]+", "_", text).strip("_")


def shot(page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/screenshots/<test>-<name>-<db>.png (kept after the run)."""
    info = _page_info.get(id(page))
    if info is None:  # a page opened by the test itself: name it after the running test
        current = os.environ.get("PYTEST_CURRENT_TEST", "unknown::unknown").split("::")[-1].split(" ")[0]
        match = re.match(r"(.*?)\[(.*)\]$", current)
        test, params = (match.group(1), match.group(2).split("-")) if match else (current, [])
        database = next((p for p in params if p in DATABASES), "db")
        others = [p for p in params if p not in DATABASES]
        info = (_safe(test + (f"[{'-'.join(others)}]" if others else "")), database)
    test, database = info
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{test}-{_safe(name)}-{database}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- signing in --------------------------------------------------------------------------

def login(page, base_url: str, username: str, password: str = PASSWORD, *, next: str | None = None,
          expect_success: bool = True):
    """Sign in through the real login form (用户名 / 密码 / 登录) and wait for the page that follows.

    Returns the response to the form's POST. With expect_success (the default) it asserts the
    POST redirected and the browser landed on a page of the app (not the login page, not a
    browser error page); otherwise it just waits for the re-rendered form.
    """
    from playwright.sync_api import Error

    url = f"{base_url.rstrip('/')}/login" + (f"?next={next}" if next else "")
    page.goto(url)
    page.get_by_label("用户名", exact=True).fill(username)
    page.get_by_label("密码", exact=True).fill(password)

    def is_the_post(response) -> bool:
        return response.request.method == "POST" and urlsplit(response.url).path == "/login"

    try:
        with page.expect_response(is_the_post) as posted, page.expect_navigation(wait_until="load"):
            page.get_by_role("button", name="登录", exact=True).click()
    except Error as exc:
        raise AssertionError(f"signing in as {username!r}: the browser could not load the page after the form "
                             f"({str(exc).splitlines()[0]})") from exc
    response = posted.value
    if expect_success:
        if response.status != 302:
            alert = page.get_by_role("alert")
            said = alert.inner_text() if alert.count() else page.title()
            raise AssertionError(f"signing in as {username!r} was refused ({response.status}): {said}")
        landed = urlsplit(page.url)
        assert page.url.startswith(base_url) and landed.path != "/login", \
            f"signing in as {username!r} redirected to {response.headers.get('location')!r} but ended on {page.url}"
    return response


# --- checking that Chinese is really drawn -----------------------------------------------

_HAN_RECTS = """(selector) => {
  const root = document.querySelector(selector);
  if (!root) return null;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const out = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++) {
      if (!/\\p{Script=Han}/u.test(node.data[i])) continue;
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const r = range.getBoundingClientRect();
      out.push({ch: node.data[i], x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height});
    }
  }
  return out;
}"""


def assert_chinese_glyphs(page, selector: str) -> list[dict]:
    """Assert the Chinese characters inside ``selector`` are drawn with real glyphs, not boxes.

    Two independent checks: (1) Chromium's own account of the fonts it used for the element
    (CDP CSS.getPlatformFontsForNode) must cover every Han character with a font fontconfig
    lists for Chinese; (2) pixels: two different characters cut out of a screenshot must
    differ and carry ink (missing-glyph boxes are all the same picture). Returns the fonts used.
    """
    import io

    from PIL import Image, ImageChops

    chars = page.evaluate(_HAN_RECTS, selector)
    assert chars, f"{selector!r} has no Chinese text on {page.url}"

    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        document = cdp.send("DOM.getDocument", {"depth": -1})["root"]
        node = cdp.send("DOM.querySelector", {"nodeId": document["nodeId"], "selector": selector})["nodeId"]
        fonts = []  # the fonts of each element's own text, so walk the element and everything inside it
        for element in _elements_under(_find_node(document, node)):
            fonts += cdp.send("CSS.getPlatformFontsForNode", {"nodeId": element})["fonts"]
    finally:
        cdp.detach()
    chinese = _chinese_font_families()
    han_glyphs = sum(f["glyphCount"] for f in fonts if f["familyName"] in chinese)
    assert han_glyphs >= len(chars), (
        f"{selector!r}: {len(chars)} Chinese characters but only {han_glyphs} glyphs came from a Chinese font; "
        f"fonts used: {fonts}")

    distinct = list({c["ch"]: c for c in chars if c["width"] > 0 and c["height"] > 0}.values())[:2]
    images = []
    for c in distinct:
        clip = {"x": c["x"], "y": c["y"], "width": c["width"], "height": c["height"]}
        png = page.screenshot(clip=clip, full_page=True)
        images.append(Image.open(io.BytesIO(png)).convert("L"))
    for c, image in zip(distinct, images):
        assert image.getextrema()[0] < 128, f"{c['ch']!r} in {selector!r} is drawn without ink"
    if len(images) == 2:
        a, b = images
        if a.size != b.size:
            b = b.resize(a.size)
        assert ImageChops.difference(a, b).getbbox() is not None, (
            f"{distinct[0]['ch']!r} and {distinct[1]['ch']!r} in {selector!r} are drawn identically: missing-glyph boxes")
    return fonts


def _find_node(tree: dict, node_id: int) -> dict:
    stack = [tree]
    while stack:
        node = stack.pop()
        if node["nodeId"] == node_id:
            return node
        stack.extend(node.get("children", []))
    raise AssertionError(f"CDP node {node_id} not found")


def _elements_under(node: dict) -> list[int]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        if current.get("nodeType") == 1:
            found.append(current["nodeId"])
        stack.extend(current.get("children", []))
    return found
