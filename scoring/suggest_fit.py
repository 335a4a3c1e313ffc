"""Fit rules suggested from the team's won and lost history: the contact fields that say
"right person" (job title words, the email's domain, country, industry, company size).

Beside the score rules of ``scoring.suggest``, not mixed with them: fit is its own axis (its
points make the fit score and grade, never the engagement score), so it gets its own model,
fitted by the same ``suggest`` on the same contacts and the same held-out part, and its own
AUC. Each candidate is a fit rule as an admin would write it, and whether a contact meets it
is decided by the fit engine itself on each distinct value, so a contact's fit points under
the suggested rules are exactly the model's sum.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from contacts.models import Contact
from scoring import fit_engine
from scoring.suggest import MAX_VALUES, MIN_SUPPORT, Features

TEXT_FIELDS = ("job_title", "email", "country", "industry")
SIZE_QUANTILES = (0.25, 0.5, 0.75)
MAX_WORDS = 40  # job title words tried, the most common first
WORD = re.compile(r"\w{3,}")


@dataclass(frozen=True)
class FieldCondition:
    """What a suggested fit rule asks of a contact field, in the words of a fit rule."""

    field: str
    operator: str  # "contains", "equals" or "between"
    value: str = ""
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}

    def to_engine(self) -> fit_engine.FitRule:
        return fit_engine.FitRule(
            id=0, name="", field=self.field, operator=self.operator, points=1,
            value=self.value, number_min=self.minimum, number_max=self.maximum,
        )  # fmt: skip


def outcome_people(contact_ids: Collection[int]) -> dict[str, list[Any]]:
    """The fit fields of these contacts, in the order of ``contact_ids``."""
    fields = (*TEXT_FIELDS, "company_size")
    rows = {
        row[0]: row[1:]
        for row in Contact.objects.filter(pk__any=set(contact_ids))
        .order_by()
        .values_list("pk", *fields)
        .iterator(chunk_size=20_000)
    }
    empty = (None,) * len(fields)
    return {field: [rows.get(pk, empty)[i] for pk in contact_ids] for i, field in enumerate(fields)}


def fit_features(people: Mapping[str, list[Any]]) -> Features:
    """Every candidate fit condition with enough support, and which contacts meet it."""
    n = len(next(iter(people.values()), []))
    conditions: list[FieldCondition] = []
    columns: list[np.ndarray] = []
    for condition, met in _candidates(people):
        share = np.count_nonzero(met) / n if n else 0.0
        if MIN_SUPPORT <= share < 1.0:
            conditions.append(condition)
            columns.append(met)
    matrix = np.column_stack(columns).astype(np.uint16) if columns else np.zeros((n, 0), np.uint16)
    _, first = np.unique(matrix.T, axis=0, return_index=True) if columns else ([], [])
    keep = sorted(first)
    return Features([conditions[i] for i in keep], matrix[:, keep])  # type: ignore[arg-type]


def _candidates(people: Mapping[str, list[Any]]) -> Iterator[tuple[FieldCondition, np.ndarray]]:
    for field in TEXT_FIELDS:
        texts = np.array(["" if v is None else str(v) for v in people.get(field, [])], object)
        if not texts.size:
            continue
        distinct, inverse, counts = np.unique(texts, return_inverse=True, return_counts=True)
        for condition in _text_conditions(field, distinct, counts):
            rule = condition.to_engine()
            holds = np.array([rule.holds({field: value}) for value in distinct.tolist()])
            yield condition, holds[inverse]
    sizes = np.array([np.nan if v is None else float(v) for v in people.get("company_size", [])])
    known = sizes[~np.isnan(sizes)]
    if known.size:
        for q in SIZE_QUANTILES:
            bound = int(np.quantile(known, q))
            with np.errstate(invalid="ignore"):
                yield FieldCondition("company_size", "between", minimum=bound), sizes >= bound
                yield FieldCondition("company_size", "between", maximum=bound), sizes <= bound


def _text_conditions(field: str, distinct: np.ndarray, counts: np.ndarray) -> list[FieldCondition]:
    """Words of job titles, the email's provider ("@gmail."), whole values elsewhere."""
    tally: Counter[str] = Counter()
    spelling: dict[str, str] = {}  # a whole value as people wrote it most often
    for value, count in sorted(zip(distinct.tolist(), counts.tolist(), strict=True),
                               key=lambda pair: -pair[1]):  # fmt: skip
        folded = " ".join(value.split()).casefold()
        if not folded:
            continue
        spelling.setdefault(folded, " ".join(value.split()))
        if field == "job_title":
            for word in set(WORD.findall(folded)):
                tally[word] += count
        elif field == "email":
            domain = folded.rpartition("@")[2]
            if "." in domain:
                tally[f"@{domain.split('.', 1)[0]}."] += count
        else:
            tally[folded] += count
    if field not in ("job_title", "email") and len(tally) > MAX_VALUES * 5:
        return []  # free text rather than a list of values
    operator = "equals" if field in ("country", "industry") else "contains"
    limit = MAX_WORDS if field == "job_title" else MAX_VALUES
    return [
        FieldCondition(field, operator, value=spelling.get(text, text) if operator == "equals"
                       else text)
        for text, _ in tally.most_common(limit)
    ]  # fmt: skip
