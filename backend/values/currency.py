"""Currency markers as documents print them next to an amount (rules: `backend.values`)."""

from __future__ import annotations

import re
import unicodedata

# Active ISO 4217 codes (list one), funds and metals included; XTS (testing) and XXX (no currency) left
# out, since no real document is priced in them. ANG/XCG and SLL/SLE: both during their changeovers.
ISO_4217 = frozenset(
    """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG
""".split()
)

# Written in place of a code: local abbreviations (ringgit, rupiah, rupee, krona/krone, zloty, koruna,
# forint, leu, dirham, taka) and dollar signs with their country's prefix. Left out as too ambiguous on
# receipts: "R" (rand; also receipt numbers "R000116475"), "SR" (riyal; also the "standard rated" tax
# code), "Fr" (franc; also the French VAT prefix): their documents print ZAR, SAR, CHF as well.
LOCAL_MARKERS = (
    "RM",
    "Rp",
    "Rs",
    "kr",
    "zł",
    "Kč",
    "Ft",
    "lei",
    "Dhs",
    "Tk",
    "US$",
    "S$",
    "HK$",
    "A$",
    "C$",
    "NZ$",
    "NT$",
    "R$",
    "MX$",
)

# Every character Unicode calls a currency symbol ($ € £ ¥ ₹ ₩ ₽ ₺ ₫ ฿ ₱ ₪ ...), Basic Multilingual Plane.
CURRENCY_SYMBOLS = "".join(c for c in map(chr, range(0x10000)) if unicodedata.category(c) == "Sc")

_WORDS = sorted(ISO_4217 | set(LOCAL_MARKERS), key=len, reverse=True)
# One currency marker: a code or abbreviation as a whole word (any case), or a symbol.
CURRENCY_MARKER = re.compile(
    r"(?<![^\W\d_])(?:" + "|".join(map(re.escape, _WORDS)) + r")(?![^\W\d_])"
    r"|[" + re.escape(CURRENCY_SYMBOLS) + "]",
    re.IGNORECASE,
)
