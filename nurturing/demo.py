"""The two classic campaigns, loaded by ``manage.py demo`` (and by the campaign tests)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction

from nurturing.models import Sequence, Step

CROSS_SELL = "Casserole → poêles assorties"
ACQUISITION = "Intérêt TV → offre téléviseurs"
SHOP = "https://boutique.example.fr"


@transaction.atomic
def campaigns_install() -> list[Sequence]:
    """Create the demo campaigns once; a second call changes nothing."""
    return [_cross_sell(), _acquisition()]


def _cross_sell() -> Sequence:
    sequence, created = Sequence.objects.get_or_create(
        name=CROSS_SELL,
        defaults={
            "description": "Bought a saucepan: offer the matching frying pans, then a reminder "
            "with 10 % off for 24 hours, then a last chance. A purchase ends it.",
            "trigger": Sequence.Trigger.EVENT,
            "trigger_event_type": "purchase",
            "trigger_tag": "saucepan",
            "reentry": Sequence.Reentry.COOLDOWN,
            "cooldown_days": 90,
            "goal_event_type": "purchase",
        },
    )
    if not created:
        return sequence
    add = _adder(sequence)
    first = add(
        Step.Kind.EMAIL,
        "Poêles assorties",
        subject="{{ first_name|default:'Bonjour' }}, les poêles assorties à votre casserole",
        body_text=(
            "Bonjour {{ first_name }},\n\n"
            "Merci pour votre casserole ! Les poêles de la même gamme l'accompagnent à "
            "merveille : même acier, même manche, même garantie.\n\n"
            f"Découvrez-les : {SHOP}/poeles-assorties\n\n"
            "L'équipe de la boutique\n"
            "Se désinscrire : {{ unsubscribe_url }}"
        ),
    )
    add(Step.Kind.WAIT, "Deux jours", delay=timedelta(days=2))
    clicked = add(Step.Kind.CONDITION, "A cliqué ?", condition=Step.Condition.CLICKED)
    add(
        Step.Kind.EMAIL,
        "Rappel −10 % pendant 24 h",
        subject="−{{ offer_percent }} % sur les poêles, jusqu'à demain",
        body_text=(
            "Bonjour {{ first_name }},\n\n"
            "Vous avez regardé nos poêles : voici {{ offer_percent }} % de réduction avec le "
            "code {{ offer_code }}, valable jusqu'au {{ offer_expires_at }}.\n\n"
            f"{SHOP}/poeles-assorties?code={{{{ offer_code }}}}\n\n"
            "Se désinscrire : {{ unsubscribe_url }}"
        ),
        offer_percent=10,
        offer_code="POELE",
        offer_valid_hours=24,
    )
    add(Step.Kind.WAIT, "Vingt heures", delay=timedelta(hours=20))
    clicked_again = add(Step.Kind.CONDITION, "A recliqué ?", condition=Step.Condition.CLICKED)
    add(
        Step.Kind.EMAIL,
        "Dernière chance",
        subject="Dernière chance : votre code {{ offer_code }} expire bientôt",
        body_text=(
            "Bonjour {{ first_name }},\n\n"
            "Votre réduction de {{ offer_percent }} % (code {{ offer_code }}) se termine le "
            "{{ offer_expires_at }}. Après, ce sera trop tard !\n\n"
            f"{SHOP}/poeles-assorties?code={{{{ offer_code }}}}\n\n"
            "Se désinscrire : {{ unsubscribe_url }}"
        ),
    )
    end = add(Step.Kind.EXIT, "Fin")
    clicked.no_step = end
    clicked.save(update_fields=["no_step"])
    clicked_again.no_step = end
    clicked_again.save(update_fields=["no_step"])
    assert first.position == 1
    return sequence


def _acquisition() -> Sequence:
    sequence, created = Sequence.objects.get_or_create(
        name=ACQUISITION,
        defaults={
            "description": "Viewed more than 5 TV pages in 30 days: an email with our TVs; "
            "opened but did not buy: a discount 3 days later; no response: exit and −10 points.",
            "trigger": Sequence.Trigger.EVENT,
            "trigger_event_type": "page_view",
            "trigger_tag": "tv",
            "trigger_count": 6,
            "trigger_within_days": 30,
            "reentry": Sequence.Reentry.ONCE,
            "goal_event_type": "purchase",
        },
    )
    if not created:
        return sequence
    add = _adder(sequence)
    add(
        Step.Kind.EMAIL,
        "Nos téléviseurs",
        subject="{{ first_name|default:'Bonjour' }}, nos téléviseurs du moment",
        body_text=(
            "Bonjour {{ first_name }},\n\n"
            "Vous cherchez un téléviseur ? Voici notre sélection : OLED, QLED, toutes tailles, "
            "livraison et installation offertes.\n\n"
            f"{SHOP}/televiseurs\n\n"
            "Se désinscrire : {{ unsubscribe_url }}"
        ),
    )
    add(Step.Kind.WAIT, "Trois jours", delay=timedelta(days=3))
    opened = add(Step.Kind.CONDITION, "A ouvert ?", condition=Step.Condition.OPENED)
    add(Step.Kind.SCORE, "Pas de réponse : −10 points", points=-10)
    add(Step.Kind.EXIT, "Sortie")
    discount = add(
        Step.Kind.EMAIL,
        "Remise téléviseurs",
        subject="{{ offer_percent }} % sur votre futur téléviseur",
        body_text=(
            "Bonjour {{ first_name }},\n\n"
            "Pour vous décider : {{ offer_percent }} % de remise avec le code {{ offer_code }}, "
            "jusqu'au {{ offer_expires_at }}.\n\n"
            f"{SHOP}/televiseurs?code={{{{ offer_code }}}}\n\n"
            "Se désinscrire : {{ unsubscribe_url }}"
        ),
        offer_percent=10,
        offer_code="TELE",
        offer_valid_hours=72,
    )
    opened.yes_step = discount
    opened.save(update_fields=["yes_step"])
    return sequence


def _adder(sequence: Sequence):  # type: ignore[no-untyped-def]
    position = 0

    def add(kind: str, name: str, **fields: object) -> Step:
        nonlocal position
        position += 1
        step = Step(sequence=sequence, position=position, kind=kind, name=name, **fields)
        step.full_clean()
        step.save()
        return step

    return add
