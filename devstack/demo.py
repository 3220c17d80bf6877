"""Demo data for `make run`: a few sellers and buyers and 1,200 realistic listings, loaded through the API.

Going through the public API (not the database) means demo data takes the same path as real users:
validation, payout accounts at the provider, the search outbox and sync.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from tqdm import tqdm

DEMO_PASSWORD = "demo-password-1"  # noqa: S105 - documented demo credential for the local stack only
DEMO_SELLERS = [
    ("anna@demo.bazaar", "Anna's Attic"),
    ("ben@demo.bazaar", "Ben Bikes"),
    ("chloe@demo.bazaar", "Chloe Collects"),
    ("dario@demo.bazaar", "Dario Digital"),
]
DEMO_BUYERS = [("bob@demo.bazaar", "Bob Buyer"), ("carla@demo.bazaar", "Carla Customer")]
DEMO_CREDENTIALS = [(email, DEMO_PASSWORD, "seller") for email, _ in DEMO_SELLERS] + [
    (email, DEMO_PASSWORD, "buyer") for email, _ in DEMO_BUYERS
]
LISTING_COUNT = 1200
# Completed demo orders per seller: the buyers' ratings of them (so reputations and `sort=rating` differ).
DEMO_RATINGS = {
    "anna@demo.bazaar": [5, 5, 5, 4],
    "ben@demo.bazaar": [4, 3, 4],
    "chloe@demo.bazaar": [5],
    "dario@demo.bazaar": [2, 3],
}

CITIES = [
    ("Berlin", "DE", 52.520, 13.405),
    ("Hamburg", "DE", 53.551, 9.993),
    ("Munich", "DE", 48.137, 11.575),
    ("Paris", "FR", 48.857, 2.352),
    ("Lyon", "FR", 45.764, 4.836),
    ("Amsterdam", "NL", 52.368, 4.904),
    ("Rotterdam", "NL", 51.924, 4.478),
    ("Vienna", "AT", 48.208, 16.373),
    ("Madrid", "ES", 40.417, -3.704),
    ("Barcelona", "ES", 41.385, 2.173),
    ("Milan", "IT", 45.464, 9.190),
    ("Rome", "IT", 41.903, 12.496),
    ("Brussels", "BE", 50.850, 4.352),
    ("Lisbon", "PT", 38.722, -9.139),
    ("Dublin", "IE", 53.350, -6.260),
]
CONDITIONS = ["new", "like_new", "good", "fair", "for_parts"]


@dataclass(frozen=True)
class Template:
    category: str
    items: tuple[str, ...]
    adjectives: tuple[str, ...]
    price_range: tuple[int, int]  # minor units
    # What an item is, where its name does not say it (a seller writes "Sony WH-1000XM4 (headphones)"):
    # the description names it, so a buyer's "headphones" or "laptop" has words to find.
    kinds: tuple[tuple[str, str], ...] = ()

    def kind(self, item: str) -> str | None:
        return dict(self.kinds).get(item)


TEMPLATES = [
    Template(
        "phones",
        ("iPhone 13", "iPhone 14 Pro", "Pixel 7", "Galaxy S22", "Fairphone 4", "Nokia 3310"),
        ("unlocked", "128 GB", "with case", "battery 90%", "dual SIM"),
        (4_000, 90_000),
        kinds=(
            ("iPhone 13", "smartphone"),
            ("iPhone 14 Pro", "smartphone"),
            ("Pixel 7", "smartphone"),
            ("Galaxy S22", "smartphone"),
            ("Fairphone 4", "smartphone"),
            ("Nokia 3310", "mobile phone"),
        ),
    ),
    Template(
        "computers",
        (
            "ThinkPad X1 Carbon",
            "MacBook Air M1",
            "Dell XPS 13",
            "Raspberry Pi 4 kit",
            "Gaming PC RTX 3070",
            "iPad Air",
        ),
        ("16 GB RAM", "512 GB SSD", "with charger", "barely used", "Linux ready"),
        (3_000, 180_000),
        kinds=(
            ("ThinkPad X1 Carbon", "laptop"),
            ("MacBook Air M1", "laptop"),
            ("Dell XPS 13", "laptop"),
            ("Raspberry Pi 4 kit", "single-board computer"),
            ("Gaming PC RTX 3070", "desktop computer"),
            ("iPad Air", "tablet"),
        ),
    ),
    Template(
        "audio",
        (
            "Sony WH-1000XM4",
            "Bose QuietComfort",
            "Marshall speaker",
            "turntable Technics SL-1200",
            "AirPods Pro",
        ),
        ("noise cancelling", "bluetooth", "vintage", "boxed"),
        (2_000, 60_000),
        kinds=(
            ("Sony WH-1000XM4", "headphones"),
            ("Bose QuietComfort", "headphones"),
            ("turntable Technics SL-1200", "record player"),
            ("AirPods Pro", "earbuds"),
        ),
    ),
    Template(
        "cameras",
        ("Fujifilm X100V", "Canon EOS R6", "Nikon FM2 film camera", "GoPro Hero 10", "Sony 50mm f1.8 lens"),
        ("mint", "low shutter count", "with strap", "two batteries"),
        (5_000, 250_000),
        kinds=(
            ("Fujifilm X100V", "compact camera"),
            ("Canon EOS R6", "mirrorless camera"),
            ("GoPro Hero 10", "action camera"),
        ),
    ),
    Template(
        "furniture",
        (
            "oak dining table",
            "mid-century armchair",
            "IKEA Billy bookcase",
            "standing desk",
            "velvet sofa",
            "leather couch",
        ),
        ("solid wood", "pick-up only", "teak", "foldable", "like new"),
        (1_500, 120_000),
    ),
    Template(
        "kitchen",
        (
            "KitchenAid stand mixer",
            "Le Creuset casserole",
            "espresso machine",
            "cast iron pan",
            "Vitamix blender",
        ),
        ("red", "24 cm", "descaled", "barely used"),
        (1_000, 45_000),
    ),
    Template(
        "garden",
        ("Weber kettle grill", "electric lawn mower", "raised garden bed", "terracotta pots set"),
        ("cordless", "weatherproof", "set of 4"),
        (1_000, 40_000),
    ),
    Template(
        "clothing",
        ("wool winter coat", "Levi's 501 jeans", "Patagonia fleece", "linen shirt", "rain jacket"),
        ("size M", "size L", "size S", "organic cotton", "waterproof"),
        (800, 25_000),
    ),
    Template(
        "shoes",
        ("Nike Air Max", "Dr. Martens boots", "trail running shoes", "leather loafers"),
        ("EU 42", "EU 39", "EU 44", "worn twice"),
        (1_500, 20_000),
        kinds=(("Nike Air Max", "sneakers"),),
    ),
    Template(
        "accessories",
        ("leather backpack", "Ray-Ban sunglasses", "Casio watch", "silk scarf"),
        ("vintage", "handmade", "with box"),
        (800, 30_000),
    ),
    Template(
        "bikes",
        (
            "road bike",
            "city bike",
            "mountain bike",
            "cargo bike",
            "folding bike Brompton",
            "Gazelle Dutch bicycle",
            "kids bicycle 20 inch",
        ),
        ("Shimano 105", "frame 56 cm", "serviced", "with lights", "electric assist"),
        (8_000, 350_000),
    ),
    Template(
        "camping",
        ("2-person tent", "down sleeping bag", "camping stove", "hiking backpack 50 L"),
        ("ultralight", "-10 C rated", "used once"),
        (1_500, 35_000),
    ),
    Template(
        "fitness",
        ("adjustable dumbbells", "yoga mat", "rowing machine", "kettlebell 16 kg"),
        ("pair", "non-slip", "foldable"),
        (1_000, 80_000),
    ),
    Template(
        "books",
        ("Dune hardcover", "The Pragmatic Programmer", "Harry Potter box set", "cookbook Ottolenghi"),
        ("first edition", "signed", "paperback", "like new"),
        (300, 15_000),
    ),
    Template(
        "music",
        (
            "Fender Stratocaster",
            "Yamaha digital piano",
            "vinyl collection jazz",
            "ukulele",
            "Yamaha acoustic guitar",
        ),
        ("with amp", "88 keys", "50 records", "tuned"),
        (2_000, 150_000),
        kinds=(("Fender Stratocaster", "electric guitar"),),
    ),
    Template(
        "games",
        ("Nintendo Switch OLED", "PlayStation 5", "Catan board game", "Lego Star Wars set"),
        ("two controllers", "complete", "sealed"),
        (1_500, 55_000),
        kinds=(("Nintendo Switch OLED", "game console"), ("PlayStation 5", "game console")),
    ),
    Template(
        "toys",
        ("wooden train set", "Playmobil castle", "plush bear", "balance bike"),
        ("complete", "age 3+", "handmade"),
        (500, 12_000),
    ),
    Template(
        "baby",
        ("Bugaboo stroller", "baby carrier", "high chair Stokke", "cot with mattress"),
        ("clean", "all parts", "smoke-free home"),
        (2_000, 70_000),
    ),
]


def demo_listings(count: int = LISTING_COUNT, seed: int = 7) -> Iterator[tuple[dict[str, object], bool]]:
    """The demo catalogue: (listing as the API takes it, whether it gets published), the same every time.
    `load` publishes these through the API; bench/relevance.py judges searches over them."""
    # Demo data, not security: a fixed seed gives the same catalogue each time.
    rng = random.Random(seed)  # noqa: S311
    for _ in range(count):
        listing = _listing(rng)
        yield listing, rng.random() < 0.95  # a few stay drafts, as in real life


def _listing(rng: random.Random) -> dict[str, object]:
    template = rng.choice(TEMPLATES)
    item, adjective = rng.choice(template.items), rng.choice(template.adjectives)
    city, country, lat, lng = rng.choice(CITIES)
    condition = rng.choice(CONDITIONS)
    low, high = template.price_range
    price = rng.randrange(low // 100, high // 100) * 100 + rng.choice([0, 0, 50, 99])
    kind = template.kind(item)
    return {
        "title": f"{item}, {adjective}",
        "description": f"{item}{f' ({kind})' if kind else ''} in {condition.replace('_', ' ')} condition, "
        f"{adjective}. Pick-up in {city} or shipping at cost.",
        "price": {"amount": price, "currency": "EUR"},
        "category": template.category,
        "condition": condition,
        "quantity": rng.choice([1, 1, 1, 2, 3]),
        "location": {
            "lat": round(lat + rng.uniform(-0.08, 0.08), 5),
            "lng": round(lng + rng.uniform(-0.08, 0.08), 5),
            "city": city,
            "country": country,
        },
        "attributes": {"shipping": rng.choice(["yes", "no"])},
    }


def _login(http: httpx.Client, email: str, name: str, roles: list[str]) -> str:
    response = http.post(
        "/v1/auth/register",
        json={"email": email, "password": DEMO_PASSWORD, "display_name": name, "roles": roles},
    )
    if response.status_code not in (201, 409):
        response.raise_for_status()
    token = http.post("/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD})
    token.raise_for_status()
    return str(token.json()["access_token"])


def load(api_url: str, count: int = LISTING_COUNT, seed: int = 7) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        buyers = [
            {"Authorization": f"Bearer {_login(http, email, name, ['buyer'])}"} for email, name in DEMO_BUYERS
        ]
        tokens = []
        for email, name in DEMO_SELLERS:
            token = _login(http, email, name, ["seller", "buyer"])
            auth = {"Authorization": f"Bearer {token}"}
            http.post(
                "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=auth
            ).raise_for_status()
            tokens.append(auth)
        published: dict[int, list[str]] = {}
        catalogue = demo_listings(count, seed)
        for i, (listing, publish) in enumerate(
            tqdm(catalogue, total=count, desc="demo listings", unit="listing", file=sys.stdout)
        ):
            auth = tokens[i % len(tokens)]
            created = http.post("/v1/listings", json=listing, headers=auth)
            created.raise_for_status()
            listing_id = created.json()["id"]
            if publish:
                http.post(f"/v1/listings/{listing_id}/publish", headers=auth).raise_for_status()
                published.setdefault(i % len(tokens), []).append(listing_id)
        for seller_index, (email, _) in enumerate(DEMO_SELLERS):
            sold = zip(DEMO_RATINGS.get(email, []), published.get(seller_index, []), strict=False)
            for n, (rating, listing_id) in enumerate(sold):
                _demo_order(http, buyers[n % len(buyers)], tokens[seller_index], listing_id, rating)
        # One open dispute, so support has a case in its queue (GET /v1/support/disputes).
        unsold = published.get(1, [])[len(DEMO_RATINGS.get(DEMO_SELLERS[1][0], [])) :]
        if unsold:
            _demo_order(http, buyers[-1], tokens[1], unsold[0], rating=None)


def _demo_order(
    http: httpx.Client, buyer: dict[str, str], seller: dict[str, str], listing_id: str, rating: int | None
) -> None:
    """A whole order through the API, then both reviews (revealed at once, so the reputations count them);
    with no rating, the buyer disputes the shipped order instead. Safe to run again: the same
    Idempotency-Key finds the same order, and steps already done answer 409."""
    placed = http.post(
        "/v1/orders",
        json={"listing_id": listing_id, "payment_method": "pm_card_visa"},
        headers={**buyer, "Idempotency-Key": f"demo-{listing_id}"},
    )
    if placed.status_code == 409:  # sold out meanwhile: nothing to show for this one
        return
    placed.raise_for_status()
    order = f"/v1/orders/{placed.json()['id']}"
    steps: list[tuple[str, dict[str, str], dict[str, object] | None]] = [
        (f"{order}/accept", seller, None),
        (f"{order}/fulfil", seller, {"carrier": "DHL"}),
    ]
    if rating is None:
        dispute: dict[str, object] = {
            "reason_code": "not_as_described",
            "message": "The colour is not the one in the photos.",
        }
        steps.append((f"{order}/dispute", buyer, dispute))
    else:
        steps += [
            (f"{order}/confirm-receipt", buyer, None),
            (f"{order}/reviews", buyer, {"rating": rating, "text": _REVIEW_TEXT[rating]}),
            (f"{order}/reviews", seller, {"rating": 5, "text": "Paid at once, friendly messages."}),
        ]
    for path, who, body in steps:
        response = http.post(path, json=body, headers=who)
        if response.status_code != 409:  # 409: done in an earlier run
            response.raise_for_status()


_REVIEW_TEXT = {
    1: "Not as described.",
    2: "Took long to ship and had scratches.",
    3: "Okay, slower than promised.",
    4: "Good item, well packed.",
    5: "Exactly as described, fast shipping!",
}
