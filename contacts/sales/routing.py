"""Where a new SQL goes, pure: the first assignment rule that holds for its fields, and round robin
among the reps who can take more. No ORM, no clock: ``contacts.sales.assignment`` loads the
rules, the reps and their loads, and writes what this decides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from contacts.field_matching import folded, number_between

CUSTOM_PREFIX = "custom:"  # as contacts.models.custom_fields.PREFIX


@dataclass(frozen=True)
class Rule:
    id: int
    position: int
    field: str  # a contact field, or "custom:<key>"
    operator: str  # equals, in, between
    team_id: int
    rep_id: int | None = None
    value: str = ""
    values: tuple[str, ...] = ()
    number_min: Decimal | None = None
    number_max: Decimal | None = None

    def holds(self, fields: Mapping[str, Any]) -> bool:
        """Whether the SQL's ``fields`` meet the rule (a blank field meets none)."""
        value = fields.get(self.field)
        if self.operator == "between":
            return number_between(value, self.number_min, self.number_max)
        text = folded(value)
        if not text:
            return False
        if self.operator == "equals":
            return text == folded(self.value)
        if self.operator == "in":
            return text in {folded(choice) for choice in self.values}
        return False


def contact_fields(
    names: Sequence[str], row: Sequence[Any], custom: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A contact's fields as the rules name them: ``names`` paired with ``row``, then its
    custom field values as "custom:<key>"."""
    fields = dict(zip(names, row, strict=True))
    fields.update({f"{CUSTOM_PREFIX}{key}": value for key, value in (custom or {}).items()})
    return fields


def route(fields: Mapping[str, Any], rules: Iterable[Rule]) -> Rule | None:
    """The first rule (in the order given) that holds, or None."""
    return next((rule for rule in rules if rule.holds(fields)), None)


def round_robin(
    reps: Sequence[int], *, after: int | None, room: dict[int, int | None], count: int
) -> list[int]:
    """The reps who take the next ``count`` leads, in turn: the one after ``after`` first (in
    the order of ``reps``, wrapping round), each while they have ``room`` (None: no limit;
    decremented here). Shorter than ``count`` when everyone is full."""
    order = sorted(reps)
    if not order:
        return []
    start = next((i for i, rep in enumerate(order) if after is None or rep > after), 0)
    chosen: list[int] = []
    turn = start
    while len(chosen) < count:
        for step in range(len(order)):
            rep = order[(turn + step) % len(order)]
            left = room.get(rep)
            if left is None or left > 0:
                break
        else:
            return chosen  # nobody can take more
        if left is not None:
            room[rep] = left - 1
        chosen.append(rep)
        turn = (turn + step + 1) % len(order)
    return chosen


def take(room: dict[int, int | None], rep: int | None) -> bool:
    """Give ``rep`` one lead if they have room for it (they are in ``room``: eligible)."""
    if rep is None or rep not in room:
        return False
    left = room[rep]
    if left is None:
        return True
    if left <= 0:
        return False
    room[rep] = left - 1
    return True
