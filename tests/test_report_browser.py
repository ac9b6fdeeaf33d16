"""The report in a real browser: Debian's chromium driven by Playwright for Python.

Loaded from file:// with no network: no console errors, no request other than the
file itself, an SVG drawn in every figure, tables that sort, a filter box that filters,
the XSS payload shown as text with no dialog ever opened, and a phone-width layout with
no sideways scrolling. Skipped (with the reason) where /usr/bin/chromium or Playwright
is missing; CI installs both (never `playwright install`: the system chromium is used).
"""

import os

import pytest

from benchbench.report import build_report
from benchbench.report.synthetic import make_record, write_run

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>alert(1)</script>"

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    recs = [
        make_record(m, b, mode=mode, variant=v, framework=fw)
        for m in ("seed_cnn", "resnet18")
        for b in (1, 4, 16)
        for mode in ("inference", "train")
        for v in ("fp32", "fp16")
        for fw in ("torch",)
    ]
    recs += [make_record("resnet18", 4, framework="tensorflow", variant=v) for v in ("fp32", "fp16")]
    recs += [
        make_record("resnet18", 4, device="cuda", mode="train"),
        make_record("seed_cnn", 1, device="cuda", status="skipped", reason="cuda: no CUDA GPU visible"),
        make_record("resnet18", 64, mode="train", status="failed", reason="out of memory: <b>3 GiB</b>"),
        make_record(XSS, 2),
        make_record(XSS, 4, status="failed", reason="<img src=x onerror=alert(2)>"),
    ]
    run = write_run(tmp / "run", recs, suite="<i>suite</i>")
    # three earlier nights of one case in a history store: the report's History section
    from benchbench.history import store as st

    nights = [
        write_run(tmp / f"night{i}", [make_record("seed_cnn", 1, speed=speed)])
        for i, speed in enumerate((1.0, 1.02, 0.97))
    ]
    url = f"sqlite:///{tmp}/history.db"
    s = st.Store(url)
    try:
        st.import_runs(s, nights + [run])
    finally:
        s.close()
    return build_report([run], tmp / "report.html", baseline="fp32", store=url)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        yield ctx
        ctx.close()


class Watched:
    """A page with everything it does recorded."""

    def __init__(self, ctx, url, width=1280):
        self.errors, self.requests, self.dialogs = [], [], []
        self.page = ctx.new_page()
        self.page.set_viewport_size({"width": width, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(url)
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.fig')].every(f => f.querySelector('.main-svg'))", timeout=60_000
        )

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def loaded(browser, report):
    w = Watched(browser, report.as_uri())
    yield w
    w.page.close()


def test_loads_offline_without_errors_and_every_figure_renders(loaded, report):
    page = loaded.page
    figs = page.locator(".fig")
    assert figs.count() >= 8
    assert page.eval_on_selector_all(".fig", "els => els.filter(e => !e.querySelector('.main-svg')).length") == 0
    assert (
        page.eval_on_selector_all(
            ".fig", "els => els.filter(e => e.querySelector('.main-svg').getBoundingClientRect().width < 200).length"
        )
        == 0
    )
    # every trace of every figure is drawn (a trace Plotly cannot place leaves its layer empty)
    drawn = page.eval_on_selector_all(
        ".fig", "els => els.map(e => [e.id, e.data.length, e.querySelectorAll('g.trace').length])"
    )
    assert all(n_data == n_drawn and n_data > 0 for _, n_data, n_drawn in drawn), drawn
    assert page.locator("section#latency g.trace.boxes path.box").count() > 0
    # offline: no "share chart" (upload) button in any modebar
    assert page.locator(".modebar-btn[data-title^='Share']").count() == 0
    assert loaded.errors == []
    assert loaded.requests and all(u.startswith("file://") for u in loaded.requests), loaded.requests
    assert loaded.requests == [report.as_uri()]
    assert loaded.dialogs == []
    for section in ("frameworks", "energy", "history"):
        assert page.locator(f"section#{section} .main-svg").count() > 0, section


def test_clicking_a_header_sorts_the_rows(loaded):
    page = loaded.page
    col = page.locator("#bb-summary thead th").all_inner_texts().index("batch")
    head = page.locator("#bb-summary thead th").nth(col)

    def column():
        return page.eval_on_selector_all(
            "#bb-summary tbody tr", f"rows => rows.map(r => Number(r.cells[{col}].dataset.v))"
        )

    before = column()
    head.click()
    assert head.get_attribute("aria-sort") == "ascending"
    assert column() == sorted(before)
    head.click()
    assert head.get_attribute("aria-sort") == "descending"
    assert column() == sorted(before, reverse=True)
    # a text column sorts too, and empty numbers go last
    status = page.locator("#bb-summary thead th").nth(0)
    status.click()
    texts = page.eval_on_selector_all("#bb-summary tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert texts == sorted(texts)


def test_the_filter_box_filters(loaded):
    page = loaded.page
    box = page.locator("#bb-filter")
    box.fill("resnet18 train")
    visible = page.eval_on_selector_all("#bb-summary tbody tr:not([hidden])", "rows => rows.map(r => r.textContent)")
    assert visible and all("resnet18" in t and "train" in t for t in visible)
    assert (
        page.locator("#bb-count").inner_text() == f"{len(visible)} of "
        f"{page.locator('#bb-summary tbody tr').count()} cases"
    )
    box.fill("")
    assert page.locator("#bb-summary tbody tr[hidden]").count() == 0


def test_the_xss_payload_is_text_everywhere(loaded):
    page = loaded.page
    assert loaded.dialogs == []
    cells = page.locator("#bb-summary td", has_text=XSS)
    assert cells.count() == 2
    assert page.locator("#bb-failures td", has_text="<img src=x onerror=alert(2)>").count() == 1
    assert page.locator("img").count() == 0
    assert page.locator("h1").inner_text() == "benchbench report: <i>suite</i>"
    # in the figures too: Plotly shows the name as characters (a title and tick labels)
    svg_texts = page.eval_on_selector_all("svg text", "els => els.map(e => e.textContent)")
    assert any(XSS in t for t in svg_texts)
    assert page.evaluate("() => document.querySelectorAll('body script').length") == 2  # figure data + page script
    assert page.locator("b", has_text="3 GiB").count() == 0


def test_hover_shows_the_whole_case(loaded):
    page = loaded.page
    fig = page.locator("section#throughput .fig").first
    fig.scroll_into_view_if_needed()
    # a bar on a log axis reaches far below the plot: point just under its top
    box = fig.locator("g.trace.bars g.point path").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 4)
    label = fig.locator(".hoverlayer .hovertext")
    label.first.wait_for(timeout=5000)
    text = label.first.text_content()
    # the first bar is the case whose model name is the payload: shown as text here too
    for word in (
        XSS,
        "torch · fp32 · inference",
        "batch 2",
        "device cpu",
        "machine bench-host",
        "case ",
        "throughput at median",
        "samples/s",
        "p99",
        "speed-up vs baseline",
        "host peak RSS",
    ):
        assert word in text, text


def test_readable_on_a_phone(browser, report):
    w = Watched(browser, report.as_uri(), width=390)
    try:
        page = w.page
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        widths = page.eval_on_selector_all(".fig .main-svg", "els => els.map(e => e.getBoundingClientRect().width)")
        assert widths and max(widths) <= 390
        assert w.errors == [] and w.dialogs == []
    finally:
        w.page.close()
