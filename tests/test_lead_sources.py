from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from contacts.models import LeadSourceCost, source_costs
from tests.factories import LeadSourceFactory

pytestmark = pytest.mark.django_db


def test_a_cost_is_spread_over_its_period_for_any_window():
    ads = LeadSourceFactory(name="Google Ads")
    salon = LeadSourceFactory(name="Salon Vivatech")
    LeadSourceCost.objects.create(
        source=ads, starts_on=date(2026, 6, 1), ends_on=date(2026, 6, 30), amount=Decimal("3000")
    )
    LeadSourceCost.objects.create(
        source=ads, starts_on=date(2026, 7, 1), ends_on=date(2026, 7, 31), amount=Decimal("3100")
    )
    LeadSourceCost.objects.create(
        source=salon, starts_on=date(2026, 6, 12), ends_on=date(2026, 6, 14), amount=Decimal("9000")
    )

    june_second_half = source_costs(date(2026, 6, 16), date(2026, 7, 5))

    # 15 of June's 30 days (1,500) + 5 of July's 31 days (500); the salon was before the window
    assert june_second_half == {ads.pk: Decimal("2000.00")}
    assert source_costs(date(2026, 6, 13), date(2026, 6, 13)) == {
        ads.pk: Decimal("100.00"),
        salon.pk: Decimal("3000.00"),
    }


def test_a_period_that_ends_before_it_starts_or_a_negative_cost_is_refused():
    source = LeadSourceFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        LeadSourceCost.objects.create(
            source=source, starts_on=date(2026, 6, 2), ends_on=date(2026, 6, 1), amount=1
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        LeadSourceCost.objects.create(
            source=source, starts_on=date(2026, 6, 1), ends_on=date(2026, 6, 1), amount=-5
        )
