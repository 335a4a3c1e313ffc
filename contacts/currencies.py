"""Currencies a deal may be in: the ISO 4217 codes in use (funds and metals left out), and the
check that a code is one of them. Amounts are never converted: each currency is summed apart."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# ISO 4217 active codes (list one, 2024), less the funds, metals and testing codes.
CURRENCY_CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG
    """.split()
)
# Offered first in the outcome form's select: the ones a French or European team meets most.
COMMON_CODES = ("EUR", "USD", "GBP", "CHF", "CAD")


def validate_currency(value: str) -> None:
    if value not in CURRENCY_CODES:
        raise ValidationError(
            _("“%(value)s” is not a currency code (ISO 4217, e.g. EUR, USD)."),
            code="invalid_currency",
            params={"value": value[:10]},
        )


def default_currency() -> str:
    """The site's currency (``DEFAULT_CURRENCY``): new deals are in it, the dashboard sums it."""
    return settings.DEFAULT_CURRENCY


def currency_choices() -> list[tuple[str, str]]:
    """The select's options: the site's currency and the common ones first, then the rest."""
    first = [default_currency(), *(code for code in COMMON_CODES if code != default_currency())]
    return [(code, code) for code in (*first, *sorted(CURRENCY_CODES - set(first)))]
