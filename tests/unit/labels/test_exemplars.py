"""Recalling a text field's label from the most similar training document (backend/labels/exemplars.py)."""

from backend.labels.conventions import Conventions, learn
from backend.labels.exemplars import Exemplars, head

SHOP = "KEDAI BUKU MAJU SDN BHD\n(123456-X)\nNO 5, JALAN MAWAR 3,\nTAMAN MAWAR,\n43000 KAJANG\nTEL 03-1234567\n"
SHOP_LABELS = {"company": "KEDAI BUKU MAJU SDN BHD", "address": "NO 5, JALAN MAWAR 3, TAMAN MAWAR, 43000 KAJANG"}
CAFE = "RESTORAN SEDAP\nLOT 9 JALAN API API\n81000 KULAI JOHOR\nCASHIER 2\n"
CAFE_LABELS = {"company": "RESTORAN SEDAP", "address": "LOT 9 JALAN API API 81000 KULAI JOHOR"}


def receipt(header: str, body: str) -> str:
    return header + body


def test_head_is_the_first_non_empty_lines():
    assert head("\n A \n\nB\nC\n", lines=2) == "A B"


def test_a_recurring_sender_gets_its_labels_back():
    memory = Exemplars([head(SHOP), head(CAFE)], [SHOP_LABELS, CAFE_LABELS], ["company", "address"])
    new = receipt(SHOP, "BOOK 12.00\nTOTAL 12.00\n")
    assert memory.recall(new, "address") == SHOP_LABELS["address"]  # joined lines: the label, not the print
    assert memory.recall(new, "company") == SHOP_LABELS["company"]
    assert memory.recall(receipt(CAFE, "KOPI 2.00\n"), "address") == CAFE_LABELS["address"]


def test_nothing_is_recalled_for_a_new_sender_or_a_label_the_document_lacks():
    memory = Exemplars([head(SHOP)], [SHOP_LABELS], ["company", "address"])
    assert memory.recall("TOKO LAIN\nJALAN LAIN 1\n99999 IPOH\n", "company") is None  # no similar head
    other_branch = SHOP.replace("NO 5, JALAN MAWAR 3,", "NO 88, JALAN RAYA 1,")
    assert memory.recall(other_branch, "address") is None  # same chain, this receipt prints another address
    assert memory.recall(other_branch, "company") == SHOP_LABELS["company"]
    assert memory.recall(SHOP, "total") is None  # a field it keeps no labels for
    assert Exemplars().recall(SHOP, "company") is None


def test_only_fields_whose_labels_stay_with_the_sender_are_recalled():
    examples = []
    for i in range(12):
        paid = ["CASH", "CARD"][i % 2]  # both words printed on every receipt: the label changes, the print not
        examples.append((receipt(SHOP, f"PEN {i}.00\nPAY BY CASH OR CARD\n"), {**SHOP_LABELS, "payment": paid}))
        examples.append((receipt(CAFE, f"TEH {i}.50\n"), CAFE_LABELS))
    memory = Exemplars.learn(examples, ["company", "address", "payment"])
    assert memory.fields == ["company", "address"]
    new = receipt(SHOP, "BOOK 3.00\nPAY BY CASH OR CARD\n")
    assert memory.recall(new, "payment") is None and memory.recall(new, "company") == SHOP_LABELS["company"]
    few = Exemplars.learn(examples[:4], ["company"])  # 4 documents: too few recalls to judge a field
    assert few.fields == [] and few.recall(new, "company") is None


def test_conventions_apply_recall_and_can_leave_it_out(tmp_path):
    examples = [(receipt(SHOP, f"ITEM {i}.00\n"), SHOP_LABELS) for i in range(5)] + [
        (receipt(CAFE, f"TEH {i}.50\n"), CAFE_LABELS) for i in range(5)
    ]
    conv = learn(examples, min_support=2)
    assert conv.exemplars is not None and len(conv.exemplars.heads) == 10
    assert conv.exemplars.fields == ["company", "address"]
    predicted = {
        "company": "KEDAI BUKU MAJU SDN BHD (123456-X)",
        "address": "NO 5, JALAN MAWAR 3, TAMAN MAWAR, 43000 KAJANG TEL 03-1234567",
    }
    new = receipt(SHOP, "PEN 9.00\n")
    assert conv.apply(predicted, new) == SHOP_LABELS
    assert conv.apply(predicted, new, recall=False)["address"] != SHOP_LABELS["address"]
    assert conv.apply(predicted, new, memory=False)["address"] != SHOP_LABELS["address"]
    loaded = Conventions.load(conv.save(tmp_path).parent)
    assert loaded.exemplars == conv.exemplars and loaded.apply(predicted, new) == SHOP_LABELS
    assert learn(examples, min_support=2, memory=False).exemplars is None
