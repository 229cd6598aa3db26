"""Field values as documents and models write them: the one reader of amounts, dates and absent values.

Scoring (`backend.scoring`: gold comparison and the learned label rules), candidate ranking, grounding
and the agents' validators and policy all read values here, so a document is extracted, scored and
validated under the same rules.

Amounts (`parse_amount` -> float for arithmetic, `parse_decimal` -> Decimal exactly as written):
- Numbers pass through (not booleans, NaN or infinities). Text is one number, optionally with currency
  markers, a sign, spacing and punctuation (".,:()") around it; any other word ("Total 9.00", "1 PC")
  makes it no amount.
- Currency markers (`CURRENCY_MARKER`), any case, before or after the number: the ISO 4217 codes as whole
  words ("USD 3,000", "9.00 MYR", "CHF 1'250.50"), every Unicode currency symbol ("$", "€1.250,00",
  "£", "¥", "₹", "₩", "₽", "฿"), dollar signs with a country prefix ("US$", "S$", "HK$", "A$", "R$") and the
  local abbreviations printed in place of a code ("RM 12.50", "Rp", "Rs.500", "kr", "zł", "Kč", "Ft"). A
  point right after an abbreviation ends it ("Rs.500" = 500) unless only one or two digits follow
  ("RM.50" = 0.50).
- Number styles: "1,250.00" and "1.250,00" are both 1250; thousands may be grouped by ",", ".", a space
  or an apostrophe ("1 250,00", "1'250.00"), Indian grouping too ("1,23,456.00"); groups must be whole
  ("1,2,3" is no amount). With two kinds of separator the later one is the decimal mark. A lone
  separator is read with the document's decimal mark when it is given (`decimal=","` makes "1.250" 1250
  and "1,250" 1.25; `number_style(text)` finds it from the amounts a document prints); without it a lone
  comma before exactly three digits groups thousands ("1,250" = 1250, "12,50" = 12.5) and a lone point is
  decimal ("1.250" = 1.25).
- Negative: a leading minus ("-3.50", "RM -3.50"), a trailing one ("3.50-") or parentheses ("(3.50)").
- `AMOUNT` finds amounts in running text (one or two decimals, optionally a currency marker right
  before); `PRINTED_NUMBER` and `GROUPED_NUMBER` find printed numbers for grounding.

Dates (`parse_date` -> datetime.date):
- ISO "2018-12-25" and "2018/12/25"; numeric "25/12/2018", "25-12-2018", "25.12.2018", "25/12/18"
  (one separator throughout); month names in English, whole or cut to three letters or more, either
  order ("25 Dec 2018", "25-DEC-18", "December 25, 2018", "Sept 3, 2020"). date and datetime objects
  pass through.
- Numeric dates are day-first (dd/mm/yyyy, as on the receipts and European documents this targets);
  month-first only when day-first is impossible ("12/25/2018" = 25 December; "02/03/2018" = 2 March).
- Two-digit years follow the POSIX and Python `%y` pivot: 69-99 are 1969-1999, 00-68 are 2000-2068.
- A time of day after the date ("25/12/2018 8:13:39 PM", "2018-12-25T10:00:00Z") is ignored; anything
  else after it makes it no date. Case, width ("２５/１２/２０１８"), repeated spaces and spaces around
  separators ("25 / 12 / 2018") are ignored.

Absent (`is_absent`): None, an empty list, and strings that are blank or, ignoring case and surrounding
spaces, one of `ABSENT_MARKERS`: "null", "none", "n/a", "na", "-". A validator treats them as not given,
scoring as no answer.
"""

from backend.values.absent import ABSENT_MARKERS, is_absent
from backend.values.amounts import AMOUNT, GROUPED_NUMBER, PRINTED_NUMBER, number_style, parse_amount, parse_decimal
from backend.values.currency import CURRENCY_MARKER, CURRENCY_SYMBOLS, ISO_4217, LOCAL_MARKERS
from backend.values.dates import MONTHS, YEAR_PIVOT, parse_date

__all__ = [
    "ABSENT_MARKERS",
    "AMOUNT",
    "CURRENCY_MARKER",
    "CURRENCY_SYMBOLS",
    "GROUPED_NUMBER",
    "ISO_4217",
    "LOCAL_MARKERS",
    "MONTHS",
    "PRINTED_NUMBER",
    "YEAR_PIVOT",
    "is_absent",
    "number_style",
    "parse_amount",
    "parse_date",
    "parse_decimal",
]
