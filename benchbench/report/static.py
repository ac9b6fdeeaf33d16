"""Static figures (``--format png|svg|pdf``) through kaleido, which drives a local
Chrome/Chromium. Missing either is a user error (exit 2) raised *before* anything is
written, with one line saying what to install."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchbench.errors import UserError

FORMATS = ("png", "svg", "pdf")
WIDTH = 1280  # px, the page's reference width
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """The Chrome/Chromium kaleido would use (honours BROWSER_PATH), or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
        if found:
            return str(found)
    except Exception:  # another kaleido/choreographer version: look on PATH ourselves
        pass
    return next((p for p in map(shutil.which, BROWSER_NAMES) if p), None)


def check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise UserError(
            f"--format {fmt}: static figures need kaleido and a Chrome/Chromium; "
            "kaleido is not installed (pip install kaleido)"
        ) from None
    if find_browser() is None:
        raise UserError(
            f"--format {fmt}: static figures need a Chrome/Chromium and none was found "
            "(install chromium, or set BROWSER_PATH to its executable)"
        )


def figures_dir(out_path: Path) -> Path:
    """Where the static figures of the report ``out_path`` go: ``<stem>-figures/``."""
    return out_path.with_name(out_path.stem + "-figures")


def export(named_figures: list[tuple[str, object]], out_dir: Path, fmt: str) -> list[Path]:
    """Write each ``(slug, figure)`` as ``NN-slug.fmt`` in ``out_dir``; the paths written."""
    import plotly.io as pio

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{i:02d}-{slug}.{fmt}" for i, (slug, _) in enumerate(named_figures, 1)]
    if not paths:
        return []
    figs = [fig for _, fig in named_figures]
    try:
        pio.write_images(figs, paths, format=fmt, width=WIDTH, height=[f.layout.height for f in figs])
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--format {fmt}: static export failed: {first}") from None
    return paths
