"""Intake: turn a file (text, PDF, image) into page texts the agents can read.

    doc = read_document("examples/documents/invoice_01_nordwind.pdf")
    doc.text, doc.pages[0].source, doc.sha256

- `.txt`, `.md`: read as UTF-8 (a BOM is dropped), one page, source "plain".
- `.pdf`: the text layer of each page (pypdf), source "text-layer". A page with (almost) no text
  layer, fewer than `MIN_TEXT_CHARS` non-space characters, is OCRed from its embedded images, so
  scanned PDFs work; such a page gets source "ocr".
- `.png`, `.jpg`, `.jpeg`, `.tif`, `.tiff`: OCR with Tesseract (pytesseract, `OCR_CONFIG`), one
  page per frame.

`Document.text` joins the pages with a marker line `--- page N ---` (blank line before and after)
in front of every page but the first, so a one-page document's text is just that page's text and
a model can still tell where a page ends. Long texts are cut for extraction with `chunks()`.

Failures raise `IntakeError` (a ValueError) naming the file and what was wrong; missing OCR
(pytesseract or the tesseract binary) raises its subclass `OcrUnavailableError`, only when a file
needs OCR: text files and PDFs with a text layer need neither.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from backend.errors import InvalidRequest

log = logging.getLogger(__name__)

TEXT_EXTS = {".txt", ".md"}
PDF_EXTS = {".pdf"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
SUPPORTED = sorted(TEXT_EXTS | PDF_EXTS | IMAGE_EXTS)
MIN_TEXT_CHARS = 20  # a PDF page with fewer non-space characters in its text layer is OCRed
# Tesseract page segmentation 4, "a single column of text of variable sizes": keeps a table row
# (description, quantity, amount) on one line, where the default (3) reads columns as blocks.
OCR_CONFIG = "--psm 4"


class IntakeError(InvalidRequest):
    """A file could not be turned into text; the message names the file and the reason."""


class OcrUnavailableError(IntakeError):
    """The file needs OCR, and pytesseract or the tesseract binary is missing."""


@dataclass
class Page:
    number: int  # 1-based
    text: str
    source: str  # "text-layer", "ocr" or "plain"


@dataclass
class Document:
    path: str
    pages: list[Page]
    sha256: str  # of the file's bytes: identifies a document whatever its name

    @property
    def text(self) -> str:
        return "".join((f"\n\n--- page {p.number} ---\n\n" if i else "") + p.text for i, p in enumerate(self.pages))


def file_sha256(path) -> str:
    """`Document.sha256` without reading (or OCRing) the document."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_document(path) -> Document:
    """Read a .txt/.md/.pdf/.png/.jpg/.jpeg/.tif/.tiff file into a Document (see the module docstring)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED:
        raise IntakeError(f"{p}: unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(SUPPORTED)}")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise IntakeError(f"{p}: no such file") from None
    except OSError as e:
        raise IntakeError(f"{p}: cannot read the file ({e.strerror or e})") from None
    if ext in TEXT_EXTS:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise IntakeError(
                f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); re-save it as UTF-8"
            ) from None
        pages = [Page(1, text, "plain")]
    elif ext in PDF_EXTS:
        pages = _read_pdf(p)
    else:
        pages = _read_image(p)
    return Document(str(p), pages, hashlib.sha256(data).hexdigest())


def _read_pdf(p: Path) -> list[Page]:
    try:
        import pypdf
    except ImportError:
        raise IntakeError(f"{p}: reading PDFs needs pypdf (pip install pypdf)") from None
    try:
        reader = pypdf.PdfReader(p)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IntakeError(f"{p}: the PDF is encrypted with a password")
        pages = []
        for n, page in enumerate(reader.pages, 1):
            text = page.extract_text() or ""
            if sum(not c.isspace() for c in text) < MIN_TEXT_CHARS:
                ocr = "\n".join(t for t in (_ocr(img, p) for img in _page_images(page, p, n)) if t.strip())
                if ocr.strip():
                    pages.append(Page(n, ocr, "ocr"))
                    continue
            pages.append(Page(n, text, "text-layer"))
        return pages
    except IntakeError:
        raise
    except Exception as e:  # pypdf raises many types on broken files
        raise IntakeError(f"{p}: not a readable PDF ({type(e).__name__}: {e})") from None


def _page_images(page, p: Path, n: int):
    try:
        files = list(page.images)
    except Exception as e:
        log.warning("%s: page %d: cannot list images (%s)", p, n, e)
        return
    for f in files:
        try:
            yield f.image
        except Exception as e:  # an image filter the installed decoders lack, say
            log.warning("%s: page %d: cannot decode image %s (%s)", p, n, f.name, e)


def _read_image(p: Path) -> list[Page]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            frames = [f.copy() for f in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, OSError) as e:
        raise IntakeError(f"{p}: not a readable image ({e})") from None
    return [Page(n, _ocr(f, p), "ocr") for n, f in enumerate(frames, 1)]


def require_ocr(p=None):
    """Return the pytesseract module, or raise OcrUnavailableError saying what to install."""
    where = f"{p}: " if p else ""
    tail = " Text files and PDFs with a text layer are read without OCR."
    try:
        import pytesseract
    except ImportError:
        raise OcrUnavailableError(
            f"{where}OCR needs the pytesseract package: pip install pytesseract "
            "(and the tesseract binary: apt-get install tesseract-ocr)." + tail
        ) from None
    cmd = pytesseract.pytesseract.tesseract_cmd
    try:
        if not shutil.which(cmd):
            raise FileNotFoundError(cmd)
        pytesseract.get_tesseract_version()
    except Exception:
        raise OcrUnavailableError(
            f"{where}OCR needs the tesseract binary ({cmd!r} not found): "
            "apt-get install tesseract-ocr (macOS: brew install tesseract)." + tail
        ) from None
    return pytesseract


def ocr_available() -> bool:
    try:
        require_ocr()
        return True
    except OcrUnavailableError:
        return False


def _ocr(image, p: Path) -> str:
    pytesseract = require_ocr(p)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        from PIL import Image

        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))  # transparent -> white, not black
    elif image.mode not in ("1", "L", "RGB"):
        image = image.convert("RGB")
    try:
        return pytesseract.image_to_string(image, config=OCR_CONFIG)
    except pytesseract.TesseractNotFoundError:
        raise OcrUnavailableError(f"{p}: the tesseract binary is missing: apt-get install tesseract-ocr") from None
    except pytesseract.TesseractError as e:
        raise IntakeError(f"{p}: OCR failed ({e})") from None


def chunks(text: str, max_chars: int = 3000, overlap: int = 200) -> list[str]:
    """Cut `text` into pieces of at most `max_chars` for extraction, on line boundaries.

    A line longer than `max_chars` is the only thing cut mid-line. Each chunk after the first
    starts with the last whole lines of the previous one, up to `overlap` characters, so a value
    split across a boundary is seen whole once; `overlap` is capped at max_chars // 2. A text of
    at most `max_chars` is one chunk; with overlap=0 the chunks concatenate back to the text.
    """
    if max_chars <= 0 or overlap < 0:
        raise ValueError(f"need max_chars > 0 and overlap >= 0, got {max_chars} and {overlap}")
    overlap = min(overlap, max_chars // 2)
    if len(text) <= max_chars:
        return [text]
    pieces = [
        line[i : i + max_chars] for line in text.splitlines(keepends=True) for i in range(0, len(line), max_chars)
    ]
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for piece in pieces:
        if cur and size + len(piece) > max_chars:
            out.append("".join(cur))
            carry: list[str] = []
            for line in reversed(cur):
                if sum(map(len, carry)) + len(line) > overlap:
                    break
                carry.insert(0, line)
            while carry and sum(map(len, carry)) + len(piece) > max_chars:
                carry.pop(0)
            cur, size = carry, sum(map(len, carry))
        cur.append(piece)
        size += len(piece)
    out.append("".join(cur))
    return out
