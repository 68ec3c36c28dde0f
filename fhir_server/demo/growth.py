"""Body measurements of a demo patient over their life: children follow a growth curve
(length/height, weight, head circumference, BMI) from birth, adults keep their height and
a weight near their own, so that every visit's numbers agree with the ones before.

Children's medians are rounded from the WHO Child Growth Standards (birth to 24 months)
and the CDC 2000 growth charts (2 to 20 years); each child keeps a percentile of their
own (a z-score), as growth charts expect. Values are plausible, not clinical references.
https://www.who.int/tools/child-growth-standards, https://www.cdc.gov/growthcharts/
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

DAYS_PER_MONTH = 30.4375
HEAD_CIRCUMFERENCE_UNTIL = 36
"""Head circumference is measured up to this age in months."""
ADULT_FROM = 216
"""From 18 years (in months) a patient keeps their adult height and BMI."""

# age in months, median for boys, median for girls
LENGTH_CM = (
    (0, 49.9, 49.1),
    (1, 54.7, 53.7),
    (2, 58.4, 57.1),
    (4, 63.9, 62.1),
    (6, 67.6, 65.7),
    (9, 72.0, 70.1),
    (12, 75.7, 74.0),
    (18, 82.3, 80.7),
    (24, 87.1, 85.7),
    (36, 96.1, 95.1),
    (48, 103.3, 102.7),
    (60, 110.0, 109.4),
    (72, 116.0, 115.0),
    (84, 121.7, 120.8),
    (96, 127.3, 126.6),
    (108, 132.6, 132.5),
    (120, 137.8, 138.6),
    (132, 143.1, 144.8),
    (144, 149.1, 151.2),
    (156, 156.0, 156.8),
    (168, 163.2, 160.4),
    (180, 169.0, 162.0),
    (192, 172.9, 162.9),
    (204, 175.2, 163.3),
    (216, 176.1, 163.6),
)
WEIGHT_KG = (
    (0, 3.3, 3.2),
    (1, 4.5, 4.2),
    (2, 5.6, 5.1),
    (4, 7.0, 6.4),
    (6, 7.9, 7.3),
    (9, 8.9, 8.2),
    (12, 9.6, 8.9),
    (18, 10.9, 10.2),
    (24, 12.2, 11.5),
    (36, 14.3, 13.9),
    (48, 16.3, 16.0),
    (60, 18.3, 18.2),
    (72, 20.7, 20.2),
    (84, 22.9, 22.4),
    (96, 25.6, 25.0),
    (108, 28.6, 28.2),
    (120, 31.9, 31.9),
    (132, 35.6, 36.0),
    (144, 39.9, 40.5),
    (156, 45.3, 45.0),
    (168, 50.8, 49.0),
    (180, 56.0, 52.0),
    (192, 60.8, 54.0),
    (204, 64.6, 55.7),
    (216, 67.2, 56.6),
)
HEAD_CM = (
    (0, 34.5, 33.9),
    (1, 37.3, 36.5),
    (2, 39.1, 38.3),
    (4, 41.6, 40.6),
    (6, 43.3, 42.2),
    (9, 45.0, 43.8),
    (12, 46.1, 45.0),
    (18, 47.4, 46.2),
    (24, 48.3, 47.2),
    (36, 49.5, 48.5),
)
# coefficient of variation: how far one standard deviation is from the median
CV_LENGTH, CV_WEIGHT, CV_HEAD = 0.037, 0.13, 0.03

GROWTH_VISITS = (0, 2, 6, 12, 24, 48, 84, 120, 156)
"""Ages in months of the well-child measurements before the recent visits (a subset)."""


def _median(table: tuple[tuple[float, float, float], ...], months: float, male: bool) -> float:
    k = bisect_right(table, months, key=lambda row: row[0])
    if k == 0:
        return table[0][1 if male else 2]
    if k == len(table):
        return table[-1][1 if male else 2]
    (a0, *low), (a1, *high) = table[k - 1], table[k]
    col = 0 if male else 1
    share = (months - a0) / (a1 - a0)
    return low[col] + share * (high[col] - low[col])


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _decimal(value: float, places: int) -> Decimal:
    return Decimal(f"{value:.{places}f}")


@dataclass(frozen=True)
class Measurements:
    height: Decimal
    """Body height (recumbent length before two years), cm."""
    weight: Decimal
    """kg"""
    bmi: Decimal
    """kg/m2"""
    head: Decimal | None
    """Head circumference in cm, until 36 months."""


class Body:
    """One patient's percentiles (z-scores) and adult build; ``measure`` gives their
    numbers on a day, with a little measurement noise."""

    def __init__(self, male: bool, birth_date: date, obese: bool, rng: random.Random) -> None:
        self.male = male
        self.birth_date = birth_date
        self.rng = rng
        self.z_length = _clip(rng.gauss(0, 0.9), -2.2, 2.2)
        self.z_weight = _clip(0.5 * self.z_length + rng.gauss(0, 0.8), -2.2, 2.3)
        self.z_head = _clip(0.4 * self.z_length + rng.gauss(0, 0.8), -2.2, 2.2)
        adult_bmi = _clip(rng.gauss(26.5, 4.0), 18.6, 41.0)
        self.adult_bmi = max(adult_bmi, rng.uniform(30.5, 38.0)) if obese else adult_bmi

    def months(self, day: date) -> float:
        return max(0, (day - self.birth_date).days) / DAYS_PER_MONTH

    def measure(self, day: date) -> Measurements:
        rng, months = self.rng, self.months(day)
        length = _median(LENGTH_CM, months, self.male) * (1 + self.z_length * CV_LENGTH)
        length *= 1 + rng.gauss(0, 0.002)
        if months >= ADULT_FROM:
            weight = self.adult_bmi * (length / 100) ** 2 * (1 + rng.gauss(0, 0.02))
        else:
            weight = _median(WEIGHT_KG, months, self.male) * (1 + self.z_weight * CV_WEIGHT)
            weight *= 1 + rng.gauss(0, 0.01)
        head = None
        if months < HEAD_CIRCUMFERENCE_UNTIL:
            head = _median(HEAD_CM, months, self.male) * (1 + self.z_head * CV_HEAD)
            head = _decimal(head * (1 + rng.gauss(0, 0.003)), 1)
        height = _decimal(length, 1)
        weight_kg = _decimal(weight, 2 if months < 24 else 1)
        bmi = _decimal(float(weight_kg) / (float(height) / 100) ** 2, 1)
        return Measurements(height, weight_kg, bmi, head)

    def growth_days(self, before: date, limit: int) -> list[date]:
        """Days of well-child measurements before ``before``: at birth, then up to
        ``limit - 1`` of the scheduled ages, spread over the years."""
        days = [self.birth_date + timedelta(days=round(m * DAYS_PER_MONTH)) for m in GROWTH_VISITS]
        days = [d for d in days if d < before]
        if len(days) <= limit:
            return days
        later, step = days[1:], (len(days) - 1) / (limit - 1)
        return [days[0], *(later[round((i + 1) * step) - 1] for i in range(limit - 1))]
