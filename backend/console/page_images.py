"""A held document's pages as pictures for the review page: each page of a PDF drawn by PDFium
(text-layer and scanned PDFs alike), each frame of an image file (PNG, JPEG, TIFF), as PNG at most
`MAX_WIDTH` pixels wide. Text files have none."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from PIL import Image, ImageSequence

from backend.errors import NotFound

MAX_WIDTH = 1400
PDF_SCALE = 2.0  # 144 dpi: an A4 page 1190 pixels wide, small print legible
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_PDFIUM = threading.Lock()  # PDFium is not thread-safe; the server renders from a thread pool


def page_count(path: Path) -> int:
    """How many page images `path` has: a PDF's pages, an image's frames, 0 for anything else."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        import pypdfium2 as pdfium

        with _PDFIUM:
            document = pdfium.PdfDocument(path)
            try:
                return len(document)
            finally:
                document.close()
    if suffix in IMAGE_SUFFIXES:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    return 0


def page_png(path: Path, n: int) -> bytes:
    """Page `n` (from 1) of `path` as PNG bytes; NotFound where the file has no such page."""
    count = page_count(path)
    if not 1 <= n <= count:
        raise NotFound(f"{path.name} has no page {n} (it has {count} page image{'s' if count != 1 else ''})")
    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        with _PDFIUM:
            document = pdfium.PdfDocument(path)
            try:
                picture = document[n - 1].render(scale=PDF_SCALE).to_pil()
            finally:
                document.close()
    else:
        with Image.open(path) as image:
            picture = next(frame.copy() for i, frame in enumerate(ImageSequence.Iterator(image), 1) if i == n)
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    if picture.width > MAX_WIDTH:
        picture = picture.resize((MAX_WIDTH, round(picture.height * MAX_WIDTH / picture.width)))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()
