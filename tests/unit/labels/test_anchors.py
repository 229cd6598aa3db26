"""Anchors: the words a field's values stand after, learned from training labels; an answer printed after
none of them is not approved automatically (backend/labels/anchors.py, stages.check)."""

from __future__ import annotations

import random
import string

from backend.inference.stages import check
from backend.labels.anchors import anchor_at, anchors_of, learn, placed
from backend.labels.conventions import Conventions
from backend.labels.conventions import learn as learn_conventions


def _receipt(n: int, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A receipt whose total follows TOTAL or GRAND TOTAL, with a subtotal, tax and cash beside it and its
    date printed after a different word each time."""
    sub, tax = 10 + n, (n % 7) + 0.5
    total, cash = f"{sub + tax:.2f}", f"{sub + tax + 20:.2f}"
    total_line = rng.choice([f"TOTAL: {total}", f"GRAND TOTAL RM {total}", f"TOTAL\n{total}"])
    date = f"{n % 28 + 1:02d}/03/2019"
    lead = "".join(rng.choice(string.ascii_uppercase) for _ in range(8))  # a word of its own
    text = (
        f"SHOP {n} SDN BHD\n{lead} {date}\nITEM A {sub:.2f}\nSUBTOTAL {sub:.2f}\nSERVICE TAX {tax:.2f}\n"
        f"{total_line}\nCASH {cash}\nTHANK YOU"
    )
    return text, {"company": f"SHOP {n} SDN BHD", "date": date, "total": total}


def _receipts(count: int, seed: int = 0) -> list[tuple[str, dict[str, str]]]:
    rng = random.Random(seed)
    return [_receipt(n, rng) for n in range(count)]


def test_an_anchor_is_the_words_before_the_value_or_the_line_above_it():
    doc = "SHOP 1\nGRAND TOTAL RM 9.50\nTOTAL\n9.50"
    assert anchor_at(doc, doc.index("RM 9.50") + 3) == "TOTAL RM"  # the last two words
    assert anchor_at(doc, doc.rindex("9.50")) == "^ TOTAL"  # it starts its line: the line above
    assert anchor_at(doc, 0) == "^"  # the document's first line
    assert anchors_of("9.50", doc) == {"TOTAL RM", "^ TOTAL"}  # every place it is printed
    assert anchors_of("7.00", doc) == set()
    assert anchors_of("9.50", "CASH 19.50\nCHANGE 9.505\nTOTAL RM9.50") == {"TOTAL RM"}  # whole numbers only


def test_learned_anchors_hold_where_the_labels_stand_and_stop_the_other_amounts():
    train, held = _receipts(40), _receipts(60, seed=1)[40:]
    anchors = learn([f["total"] for _, f in train], [t for t, _ in train])
    assert sorted(anchors) == ["TOTAL", "TOTAL RM", "^ TOTAL"]
    for text, fields in held:
        assert placed(fields["total"], text, anchors) is True  # every held-out label stands after one
        sub = text.split("SUBTOTAL ")[1].split("\n")[0]
        assert placed(sub, text, anchors) is False  # the subtotal, read well, is not the total
        assert placed("999.99", text, anchors) is None  # not printed: grounding's call, not the anchors'


def test_anchors_are_kept_most_shared_first():
    docs = [f"SHOP {n}\nTOTAL {n}.00" for n in range(30)] + [f"SHOP {n}\nNET TOTAL {n}.00" for n in range(30, 33)]
    assert learn([f"{n}.00" for n in range(33)], docs) == ["TOTAL", "NET TOTAL"]


def test_no_anchors_where_the_labels_follow_no_shared_words_or_are_too_few():
    train = _receipts(40)
    assert learn([f["date"] for _, f in train], [t for t, _ in train]) == []  # after a different word each time
    few = train[:19]
    assert learn([f["total"] for _, f in few], [t for t, _ in few]) == []  # under 20 labels found
    assert learn(["7.00"] * 40, [t for t, _ in train]) == []  # labels not printed in their documents


def test_check_sends_an_answer_printed_after_no_anchor_to_review_and_says_where():
    rules = learn_conventions(_receipts(40))
    assert rules.fields["total"].anchors and not rules.fields["date"].anchors
    text, fields = _receipts(41)[40]
    assert check(fields, rules, text) == {}
    sub = text.split("SUBTOTAL ")[1].split("\n")[0]
    checks = check({**fields, "total": sub}, rules, text)
    assert list(checks) == ["total"]
    assert checks["total"] == (
        f"'{sub}' is printed after 'ITEM', 'SUBTOTAL', where no training label of total stood "
        "(they stood after a line ending 'TOTAL', 'TOTAL', 'TOTAL RM')"  # the most shared first
    )
    assert check({**fields, "total": sub}, rules) == {}  # without the document: only the kind is checked


def test_anchors_travel_with_the_saved_rules(tmp_path):
    rules = learn_conventions(_receipts(40))
    (tmp_path / "adapter").mkdir()
    rules.save(tmp_path / "adapter", memory_folder=tmp_path)
    loaded = Conventions.load(tmp_path / "adapter")
    assert loaded is not None and loaded.fields["total"].anchors == rules.fields["total"].anchors
