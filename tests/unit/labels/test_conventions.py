"""Label conventions learned from hand-made training examples, and each normalisation applied to
predictions (backend/labels/conventions.py)."""

from __future__ import annotations

from backend.labels.conventions import (
    Conventions,
    FieldConvention,
    cut_at_stop,
    cut_off,
    format_amount,
    format_date,
    format_text,
    learn,
    learn_lines,
    line_span,
    snap,
)


def _learned(pairs, **kw) -> Conventions:
    return learn(pairs, min_support=1, **kw)


# -- kinds ---------------------------------------------------------------------------------------------
def test_kinds_come_from_the_labels():
    pairs = [
        (
            f"SHOP {i}\nDATE {i + 1:02d}/01/2018\nTOTAL RM {i}.50",
            {"shop": f"SHOP {i}", "date": f"{i + 1:02d}/01/2018", "total": f"{i}.50"},
        )
        for i in range(10)
    ]
    conv = _learned(pairs)
    assert {n: c.kind for n, c in conv.fields.items()} == {"shop": "text", "date": "date", "total": "amount"}
    assert conv.examples == 10


def test_too_few_labels_give_no_convention():
    conv = learn([("A", {"x": "9.00"}), ("B", {"x": None})], min_support=2)
    assert "x" not in conv.fields
    assert conv.apply({"x": "RM 9"}) == {"x": "RM 9"}


# -- amounts -------------------------------------------------------------------------------------------
def test_amounts_drop_the_currency_and_take_two_decimals():
    pairs = [(f"TOTAL RM {v}", {"total": v}) for v in ["9.00", "12.50", "3.10", "100.00", "7.95"]]
    conv = _learned(pairs)
    total = conv.fields["total"]
    assert (total.currency, total.decimals, total.thousands) == (False, 2, False)
    assert conv.apply_value("total", "RM 9.5") == "9.50"
    assert conv.apply_value("total", "RM1,250.00") == "1250.00"
    assert conv.apply_value("total", 12) == "12.00"
    assert conv.apply_value("total", "n/a") == "n/a"  # absent: untouched
    assert conv.apply_value("total", "about nine") == "about nine"  # not an amount: untouched


def test_amounts_keep_the_currency_and_group_thousands_when_the_labels_do():
    labels = ["RM1,250.00", "RM2,000.50", "RM 3,100.00", "RM9.00"]
    conv = _learned([(f"TOTAL {v}", {"total": v}) for v in labels])
    total = conv.fields["total"]
    assert total.currency and total.thousands and total.decimals == 2
    assert conv.apply_value("total", "RM1250") == "RM1,250.00"
    assert conv.apply_value("total", "1250") == "1,250.00"  # no marker printed: none invented


def test_mixed_decimals_are_left_as_predicted():
    conv = FieldConvention(kind="amount", decimals=None)
    assert format_amount("RM 12.5", conv) == "12.5"
    assert format_amount("$ 1,250.5", conv) == "1250.5"


# -- dates ---------------------------------------------------------------------------------------------
def test_dates_lose_the_time_the_labels_never_keep():
    pairs = [(f"DATE: {d} 8:13:39 PM", {"date": d}) for d in ["25/12/2018", "01/02/2018", "13/03/2017"]]
    conv = _learned(pairs)
    date = conv.fields["date"]
    assert (date.kind, date.keep_time, date.date_format) == ("date", False, None)
    assert conv.apply_value("date", "25/12/2018 8:13:39 PM") == "25/12/2018"
    assert conv.apply_value("date", "03 MAR 2018 18:22") == "03 MAR 2018"
    assert conv.apply_value("date", "21-05-17") == "21-05-17"  # as printed


def test_dates_follow_a_label_format_that_is_not_the_printed_one():
    pairs = [
        ("DATE 25/12/2018", {"date": "2018-12-25"}),
        ("DATE 01-02-18", {"date": "2018-02-01"}),
        ("03 MAR 2018", {"date": "2018-03-03"}),
    ]
    conv = _learned(pairs)
    assert conv.fields["date"].date_format == "%Y-%m-%d"
    assert conv.apply_value("date", "25/12/2018 10:00") == "2018-12-25"
    assert conv.apply_value("date", "not a date") == "not a date"


def test_times_are_kept_when_the_labels_keep_them():
    conv = FieldConvention(kind="date", keep_time=True)
    assert format_date("25/12/2018 8:13", conv) == "25/12/2018 8:13"


# -- text ----------------------------------------------------------------------------------------------
ADDRESS_DOCS = [
    ("SHOP A\nNO 1, JALAN SATU,\nTAMAN DUA,\n81100 JOHOR.\nTEL 123", "NO 1, JALAN SATU, TAMAN DUA, 81100 JOHOR."),
    ("SHOP B\nLOT 5 JALAN TIGA\n43000 KAJANG.\nTEL 456", "LOT 5 JALAN TIGA 43000 KAJANG."),
    ("SHOP C\n12 JALAN EMPAT\n50000 KL.\nTHANK YOU", "12 JALAN EMPAT 50000 KL."),
]


def test_addresses_join_lines_with_a_space_keep_the_final_full_stop_and_are_upper_case():
    conv = _learned([(doc, {"address": label}) for doc, label in ADDRESS_DOCS], memory=False)
    address = conv.fields["address"]
    assert (address.case, address.line_joiner, address.trailing_punct) == ("upper", " ", "keep")
    doc = "SHOP D\n7 JALAN LIMA\n40000 SHAH ALAM.\nTEL 789"
    assert conv.apply_value("address", "7 jalan lima\n40000 shah alam", doc) == "7 JALAN LIMA 40000 SHAH ALAM."
    assert conv.apply_value("address", "7 JALAN LIMA") == "7 JALAN LIMA"  # no document: nothing to look up


def test_line_joiner_and_dropped_full_stops_are_learned():
    pairs = [
        ("A\nNO 1\nJALAN SATU.\nTEL", {"address": "NO 1, JALAN SATU"}),
        ("B\nLOT 5\nJALAN TIGA.\nTEL", {"address": "LOT 5, JALAN TIGA"}),
        ("C\n12 JALAN\nKL.\nTEL", {"address": "12 JALAN, KL"}),
    ]
    conv = _learned(pairs, memory=False)
    address = conv.fields["address"]
    assert (address.line_joiner, address.trailing_punct) == (", ", "strip")
    assert conv.apply_value("address", "NO 9\nJALAN ENAM.", "X\nNO 9\nJALAN ENAM.\n") == "NO 9, JALAN ENAM"


def test_mixed_case_labels_are_left_as_printed():
    pairs = [
        ("Acme Ltd\nx", {"company": "Acme Ltd"}),
        ("BOLT CO\ny", {"company": "BOLT CO"}),
        ("nuts inc\nz", {"company": "nuts inc"}),
    ]
    conv = _learned(pairs, memory=False)
    assert conv.fields["company"].case == "as_printed"
    assert conv.apply_value("company", "  Acme   Ltd ") == "Acme Ltd"


# -- memory of known values ----------------------------------------------------------------------------
KNOWN = {
    "NO. 9-G, JALAN DINAR D U3/D TAMAN SUBANG PERDANA, 40150 SHAH ALAM": 3,
    "PERNIAGAAN ZHENG HUI": 2,
    "KEDAI RUNCIT AH SENG": 1,
}


def test_a_misspelt_copy_snaps_to_the_known_value_the_document_contains():
    doc = "PERNIAGAAN ZHENG HUI\nJM0325965-V\nNO.59 JALAN PERMAS"
    assert snap("PERNIAGAAN ZHENG HIU", KNOWN, doc) == "PERNIAGAAN ZHENG HUI"


def test_a_value_cut_short_is_extended_to_the_known_value():
    doc = "SHOP\nNO. 9-G, JALAN DINAR D U3/D\nTAMAN SUBANG PERDANA,\n40150 SHAH ALAM\nTEL"
    assert snap("NO. 9-G, JALAN DINAR D U3/D", KNOWN, doc) == (
        "NO. 9-G, JALAN DINAR D U3/D TAMAN SUBANG PERDANA, 40150 SHAH ALAM"
    )


def test_a_value_the_document_prints_is_trusted():
    # the document says 81760; a known label says 81750: the printed value wins
    known = {"NO.59 JALAN PERMAS 9/5 81750 JOHOR BAHRU": 2}
    doc = "SHOP\nNO.59 JALAN PERMAS 9/5\n81760 JOHOR BAHRU\n"
    assert snap("NO.59 JALAN PERMAS 9/5 81760 JOHOR BAHRU", known, doc) is None


def test_no_snap_to_a_known_value_the_document_does_not_contain_or_an_unrelated_one():
    assert snap("KEDAI RUNCIT AH SING", KNOWN, "KEDAI BESAR\nJALAN 5") is None  # not in this document
    assert snap("TOTALLY DIFFERENT SHOP", KNOWN, "TOTALLY DIFFERENT SHOP\nKEDAI RUNCIT AH SENG") is None
    assert snap("PERNIAGAAN ZHENG HUI", KNOWN, "PERNIAGAAN ZHENG HUI") is None  # already the known value


def test_memory_is_learned_and_can_be_switched_off():
    pairs = [("PERNIAGAAN ZHENG HUI\nX", {"company": "PERNIAGAAN ZHENG HUI"})] * 2 + [
        ("KEDAI RUNCIT\nY", {"company": "KEDAI RUNCIT"})
    ]
    conv = _learned(pairs)
    assert conv.fields["company"].known == {"PERNIAGAAN ZHENG HUI": 2, "KEDAI RUNCIT": 1}
    doc = "PERNIAGAAN ZHENG HUI\nJM0325965-V"
    assert conv.apply_value("company", "PERNIAGAAN ZENG HUI", doc) == "PERNIAGAAN ZHENG HUI"
    assert conv.apply_value("company", "PERNIAGAAN ZENG HUI", doc, memory=False) == "PERNIAGAAN ZENG HUI"
    assert format_text("PERNIAGAAN ZENG HUI", conv.fields["company"], doc, memory=False) == "PERNIAGAAN ZENG HUI"


# -- where labels sit, and fields that never contain each other ---------------------------------------
def test_line_span_finds_whole_line_runs_and_line_prefixes():
    doc = "  \nACME TRADING (123-X)\nNO 1, JALAN A,\n40000 SHAH ALAM.\nTOTAL 9.00"
    assert line_span("NO 1, JALAN A, 40000 SHAH ALAM.", doc) == (1, 2, False)
    assert line_span("ACME TRADING", doc) == (0, 1, True)  # a name before its registration number
    assert line_span("acme trading (123-x)", doc) == (0, 1, False)
    assert line_span("ACME TRAD", doc) is None  # not at a word boundary
    assert line_span("JALAN A, 40000", doc) is None  # neither whole lines nor a line's first words


def test_the_line_window_covers_the_labels():
    header = "HEADER\n"
    docs = [f"SHOP {i} SDN BHD (12{i}-X)\n{header * (i % 3)}NO {i}, JALAN A,\n4000{i} KL.\nTOTAL" for i in range(20)]
    lines = learn_lines([f"NO {i}, JALAN A, 4000{i} KL." for i in range(20)], docs)
    assert lines == {"within": 4, "max_lines": 2, "prefixes": False}
    names = learn_lines([f"SHOP {i} SDN BHD" for i in range(20)], docs)
    assert names == {"within": 1, "max_lines": 1, "prefixes": True}
    assert learn_lines(["NOWHERE", "ELSE", "X"], docs[:3]) is None  # not line-aligned: no window


def test_cut_off_removes_the_other_fields_value_at_either_end():
    assert cut_off("KEDAI AH SENG 3, JALAN PERDANA 5, KL.", "KEDAI AH SENG") == "3, JALAN PERDANA 5, KL."
    assert cut_off("LOT 5 JALAN PERMAS, JOHOR ESJAY FUEL", "ESJAY FUEL") == "LOT 5 JALAN PERMAS, JOHOR"
    assert cut_off("LOT 5 ESJAY FUEL JALAN", "ESJAY FUEL") == "LOT 5 ESJAY FUEL JALAN"  # inside: left alone
    assert cut_off("ESJAY FUEL", "ESJAY FUEL") == "ESJAY FUEL"  # nothing would be left
    assert cut_off("ABC DEF", "ABC") == "ABC DEF"  # too short to be sure
    assert cut_off(None, "ESJAY FUEL") is None


def test_disjoint_fields_are_learned_and_applied():
    pairs = [
        (f"SHOP {i}\nNO {i} JALAN A\nKL", {"company": f"SHOP NUMBER {i}", "address": f"NO {i} JALAN A KL"})
        for i in range(25)
    ]
    conv = _learned(pairs, memory=False)
    assert conv.disjoint == {"company": ["address"], "address": ["company"]}
    got = conv.apply({"company": "SHOP NUMBER 7", "address": "SHOP NUMBER 7 NO 7 JALAN A KL"}, "doc")
    assert got == {"company": "SHOP NUMBER 7", "address": "NO 7 JALAN A KL"}
    mixed = pairs + [(d, {**f, "address": f"{f['company']} {f['address']}"}) for d, f in pairs[:2]]
    assert _learned(mixed, memory=False).disjoint == {"company": ["address"]}  # 2 of 27 addresses hold the name
    assert Conventions.from_json(conv.to_json()) == conv


# -- stops -------------------------------------------------------------------------------------------
def test_cut_at_stop_ends_a_name_at_its_registration_number_or_an_unclosed_parenthesis():
    code = ["code"]
    assert cut_at_stop("KING'S CONFECTIONERY S/B 273500-U (KSB)", code) == "KING'S CONFECTIONERY S/B"
    assert cut_at_stop("Y SOON FATT S/B (81497-P)", code) == "Y SOON FATT S/B"
    assert cut_at_stop("PERNIAGAAN ZHENG HUI JM0325955-V", code) == "PERNIAGAAN ZHENG HUI"
    assert cut_at_stop("DION REALTIES SDN BHD (CO.", code) == "DION REALTIES SDN BHD"
    assert cut_at_stop("FUN N CHEER (MALURI)", code) == "FUN N CHEER (MALURI)"  # closed, no code
    assert cut_at_stop("99 SPEED MART S/B", code) == "99 SPEED MART S/B"  # numbers without a letter suffix
    assert cut_at_stop("(81497-P) SHOP", code) == "(81497-P) SHOP"  # starts with one: left alone


def test_cut_at_stop_ends_an_address_at_the_phone_line_and_keeps_its_punctuation():
    value = "NO.50, JALAN PBS 14/11, BUKIT SERDANG, TEL : 03-89410243 FAX : 03-89410244"
    assert cut_at_stop(value, ["contact"]) == "NO.50, JALAN PBS 14/11, BUKIT SERDANG,"
    assert cut_at_stop(value, ["code"]) == value
    assert cut_at_stop("SHOP A GST REG 1234 (TEL", ["code", "contact"]) == "SHOP A"  # the earliest stop


def test_stops_are_learned_only_where_the_labels_never_hold_them():
    names = [
        (
            f"SHOP {chr(65 + i)} SDN BHD (12345{i}-X)\nNO {i}, JALAN 1851-A\nTEL 03-1234",
            {"shop": f"SHOP {chr(65 + i)} SDN BHD", "address": f"NO {i}, JALAN 1851-A"},
        )
        for i in range(20)
    ]
    conv = _learned(names)
    assert conv.fields["shop"].stops == ["code", "contact"] and conv.fields["address"].stops == ["contact"]
    assert conv.apply(
        {"shop": "SHOP Q SDN BHD (99999-X)", "address": "NO 3, JALAN 1851-A TEL 03-1234"}, memory=False
    ) == {"shop": "SHOP Q SDN BHD", "address": "NO 3, JALAN 1851-A"}
    assert _learned(names[:10]).fields["shop"].stops == []  # too few labels to say "never"


# -- storing -------------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    pairs = [
        (f"TOTAL RM {v}\n{d}", {"total": v, "date": d}) for v, d in [("9.00", "01/01/2018"), ("3.50", "02/01/2018")]
    ]
    conv = _learned(pairs)
    conv.note = "hand-made labels"
    path = conv.save(tmp_path)
    assert path.name == "conventions.json"
    loaded = Conventions.load(tmp_path)
    assert loaded == conv
    assert loaded.apply({"total": "RM 4", "date": "03/01/2018 10:00", "other": "x"}) == {
        "total": "4.00",
        "date": "03/01/2018",
        "other": "x",
    }
    assert Conventions.load(tmp_path / "nowhere") is None
