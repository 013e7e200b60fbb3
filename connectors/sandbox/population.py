"""One synthetic population, the same people in every departmental system."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from faker import Faker

from materials_store.identity import check_character, credit_code_check_character

#: Real, current county-level division codes (GB/T 2260) for the sandbox's residents.
REGIONS = (
    "110101", "110102", "110105", "110106", "110108", "310101", "310104", "310105", "310106", "310112",
    "310115", "330102", "330105", "330106", "330108", "330110", "320102", "320104", "320106", "440103",
    "440104", "440106", "440303", "440304", "440305", "510104", "510105", "510107", "420102", "420106",
)  # fmt: skip
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(slots=True)
class Person:
    id: str
    name: str
    sex: str
    birth_date: dt.date
    region: str
    address: str
    household: int
    relation: str
    spouse: int | None = None


@dataclass(slots=True)
class Company:
    code: str
    name: str
    legal_representative: int
    region: str
    established_on: dt.date


@dataclass(slots=True)
class Birth:
    mother: int
    father: int | None
    child_name: str
    sex: str
    birth_date: dt.date


@dataclass(slots=True)
class Population:
    persons: list[Person] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    births: list[Birth] = field(default_factory=list)
    marriages: list[tuple[int, int, dt.date]] = field(default_factory=list)
    hospitals: list[str] = field(default_factory=list)


class NamePools:
    """Name and address pools drawn once from Faker zh_CN, then combined with a seeded RNG (fast)."""

    def __init__(self, seed: int) -> None:
        faker = Faker("zh_CN")
        faker.seed_instance(seed)
        self.surnames = sorted({faker.last_name() for _ in range(400)})
        self.male = sorted({faker.first_name_male() for _ in range(1500)})
        self.female = sorted({faker.first_name_female() for _ in range(1500)})
        self.streets = sorted({faker.street_name() for _ in range(400)})
        self.companies = sorted({faker.company_prefix() for _ in range(600)})
        self.hospitals = [f"{faker.city_name()}市妇幼保健院" for _ in range(20)]

    def given(self, rng: random.Random, sex: str) -> str:
        return rng.choice(self.male if sex == "男" else self.female)


def person_id(region: str, birth: dt.date, serial: int, sex: str) -> str:
    """A valid ID: the 17th digit is odd for men, even for women."""
    sequence = (serial % 500) * 2 + (1 if sex == "男" else 0)
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"[:17]
    return first17 + check_character(first17)


def credit_code(rng: random.Random, region: str) -> str:
    body = "91" + region + "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    return body + credit_code_check_character(body)


def build_population(size: int, seed: int) -> Population:
    """``size`` persons in households, with marriages, births of the last year and companies."""
    rng = random.Random(seed)
    pools = NamePools(seed)
    population = Population()
    used: set[str] = set()
    today = dt.date(2026, 11, 1)
    index = 0
    household = 0
    while index < size:
        household += 1
        region = rng.choice(REGIONS)
        street = rng.choice(pools.streets)
        address = f"{street}{rng.randint(1, 300)}号{rng.randint(1, 30)}幢{rng.randint(101, 2802)}室"
        surname = rng.choice(pools.surnames)
        members = min(size - index, rng.choice((1, 2, 2, 3, 3, 4)))
        head_sex = rng.choice(("男", "女"))
        head_birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 50))
        for position in range(members):
            if position == 0:
                sex, birth, relation = head_sex, head_birth, "户主"
            elif position == 1:
                sex = "女" if head_sex == "男" else "男"
                birth = head_birth + dt.timedelta(days=rng.randint(-1500, 1500))
                relation = "配偶"
            else:
                sex = rng.choice(("男", "女"))
                birth = head_birth + dt.timedelta(days=rng.randint(365 * 22, 365 * 35))
                birth = min(birth, today - dt.timedelta(days=400))
                relation = "子" if sex == "男" else "女"
            family = surname if relation != "配偶" else rng.choice(pools.surnames)
            name = family + pools.given(rng, sex)
            while True:
                candidate = person_id(region, birth, rng.randrange(10**6), sex)
                if candidate not in used:
                    used.add(candidate)
                    break
            population.persons.append(
                Person(candidate, name, sex, birth, region, address, household, relation)
            )
            index += 1
        if members >= 2:
            head, spouse = index - members, index - members + 1
            population.persons[head].spouse, population.persons[spouse].spouse = spouse, head
            married = max(population.persons[head].birth_date, population.persons[spouse].birth_date)
            married += dt.timedelta(days=365 * 22 + rng.randrange(365 * 8))
            population.marriages.append((head, spouse, min(married, today - dt.timedelta(days=30))))
            mother = head if population.persons[head].sex == "女" else spouse
            mother_age = (today - population.persons[mother].birth_date).days // 365
            if 20 <= mother_age <= 45 and rng.random() < 0.35:
                father = spouse if mother == head else head
                child_sex = rng.choice(("男", "女"))
                population.births.append(
                    Birth(
                        mother=mother,
                        father=father if rng.random() < 0.95 else None,
                        child_name=surname + pools.given(rng, child_sex),
                        sex=child_sex,
                        birth_date=today - dt.timedelta(days=rng.randrange(5, 300)),
                    )
                )
    for _ in range(max(1, size // 10)):
        region = rng.choice(REGIONS)
        owner = rng.randrange(len(population.persons))
        name = f"{rng.choice(pools.companies)}{rng.choice(('科技', '商贸', '餐饮', '建设', '文化'))}有限公司"
        established = dt.date(1995, 1, 1) + dt.timedelta(days=rng.randrange(365 * 30))
        population.companies.append(Company(credit_code(rng, region), name, owner, region, established))
    population.hospitals = pools.hospitals
    return population
