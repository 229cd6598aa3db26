"""The review page's pictures of a document: PDF pages drawn (text layer or not), image frames, none
for text, a clear 404 past the last page."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from backend.console.page_images import MAX_WIDTH, page_count, page_png
from backend.errors import NotFound

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "documents"


def _ink(png: bytes) -> tuple[Image.Image, float]:
    """The picture and the share of its pixels that are dark (print on the page)."""
    picture = Image.open(io.BytesIO(png)).convert("L")
    dark = sum(1 for value in picture.getdata() if value < 128)
    return picture, dark / (picture.width * picture.height)


def test_a_text_layer_pdf_is_drawn_with_its_print():
    path = EXAMPLES / "receipt_01_copper_kettle.pdf"
    assert page_count(path) == 1
    picture, ink = _ink(page_png(path, 1))
    assert picture.width <= MAX_WIDTH and picture.height > picture.width  # a portrait page
    assert 0.002 < ink < 0.3  # print on white: not blank, not a black box


def test_a_scan_shows_its_pixels_and_wide_images_are_scaled_down(tmp_path):
    scan = EXAMPLES / "invoice_02_lumiere_scan.png"
    picture, ink = _ink(page_png(scan, 1))
    with Image.open(scan) as original:
        assert picture.width == min(original.width, MAX_WIDTH)
    assert ink > 0.002
    wide = tmp_path / "wide.tiff"
    frames = [Image.new("RGB", (3000, 1000), colour) for colour in ("white", "black")]
    frames[0].save(wide, save_all=True, append_images=frames[1:])
    assert page_count(wide) == 2
    second, ink = _ink(page_png(wide, 2))
    assert (second.width, second.height) == (MAX_WIDTH, round(1000 * MAX_WIDTH / 3000)) and ink == 1.0


def test_text_has_no_pages_and_a_page_past_the_last_is_not_found(tmp_path):
    text = tmp_path / "receipt.txt"
    text.write_text("TOTAL 9.00")
    assert page_count(text) == 0
    with pytest.raises(NotFound, match="receipt.txt has no page 1 \\(it has 0 page images\\)"):
        page_png(text, 1)
    with pytest.raises(NotFound, match="has no page 2 \\(it has 1 page image\\)"):
        page_png(EXAMPLES / "receipt_01_copper_kettle.pdf", 2)
