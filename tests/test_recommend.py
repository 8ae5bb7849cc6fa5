"""Events recorded by producers, and recommendations computed by real search workers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from mmq.client import Client
from mmq.errors import BadRequest
from mmq.jobs.events import DEFAULT_WEIGHTS
from mmq.schemas import IngestItem, RecommendResult
from tests.support.cli import mmq
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow

# Four things people like, twelve items each: texts, so that the model places each
# concept's items near each other without any image.
CONCEPTS = {
    "dog": [
        "a dog runs across the grass",
        "a puppy chews a stick",
        "two dogs play in the park",
        "a black dog swims in a lake",
        "a dog catches a frisbee",
        "a dog sleeps on a sofa",
        "a brown dog fetches a ball",
        "a small dog barks at the door",
        "a dog on a leash",
        "a sheepdog herds the sheep",
        "a wet dog shakes off water",
        "a dog digs in the sand",
    ],
    "food": [
        "a bowl of tomato soup",
        "a slice of pepperoni pizza",
        "fresh bread from the oven",
        "a plate of spaghetti",
        "a chocolate cake with cream",
        "a salad of lettuce and tomato",
        "grilled fish with lemon",
        "a stack of pancakes with syrup",
        "a cheeseburger and fries",
        "sushi rolls on a wooden board",
        "a bowl of rice and curry",
        "a cup of hot coffee",
    ],
    "space": [
        "a rocket launches into the sky",
        "the moon over the desert",
        "an astronaut on a walk",
        "stars of the milky way",
        "a satellite orbits the earth",
        "the rings of saturn",
        "a telescope points at the night sky",
        "the surface of mars",
        "a comet with a long tail",
        "the space station above the clouds",
        "a galaxy far away",
        "a total solar eclipse",
    ],
    "car": [
        "a red sports car on the road",
        "a truck on the highway",
        "an old car in a garage",
        "a taxi in the city traffic",
        "a race car on the track",
        "a car wash with soap",
        "a mechanic fixes an engine",
        "a blue convertible by the sea",
        "a jeep on a dirt road",
        "cars parked along the street",
        "a police car with its lights on",
        "a tyre being changed",
    ],
}


def ids(concept: str, *numbers: int) -> list[str]:
    return [f"{concept}-{n}" for n in numbers]


@pytest.fixture(scope="module")
def shop(client: Client, workers: Procs) -> str:
    name = fresh("rec")
    items = [
        IngestItem(text=text, external_id=f"{concept}-{i}", metadata={"concept": concept})
        for concept, texts in CONCEPTS.items()
        for i, text in enumerate(texts)
    ]
    result = client.ingest(items, collection=name).result(timeout=300)
    assert result.failed == 0, result.items
    return name


def recommend(client: Client, user: str, collection: str, **kw: object) -> RecommendResult:
    return client.recommend(user, collection, **kw).result(timeout=60)  # type: ignore[arg-type]


def events_of(client: Client, collection: str) -> list[tuple[Any, ...]]:
    with connect(client.urls.database_url) as conn:
        rows = conn.execute(
            "SELECT user_id, external_id, event, weight, at FROM events"
            " WHERE collection = %s ORDER BY id",
            (collection,),
        ).fetchall()
    return rows


def test_events_are_recorded_with_their_weights_and_loaded_from_csv(
    client: Client, tmp_path: Path
) -> None:
    name = fresh("ev")
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    client.record("ann", name, "dog-1", "purchase")
    client.record("ann", name, "dog-2", "view", at=then.replace(tzinfo=None))  # naive: UTC
    client.record("ann", name, "dog-3", "wishlist", weight=1.5)
    with pytest.raises(BadRequest, match="'wishlist' has no default weight"):
        client.record("ann", name, "dog-4", "wishlist")
    rows = events_of(client, name)
    assert [r[:4] for r in rows] == [
        ("ann", "dog-1", "purchase", DEFAULT_WEIGHTS["purchase"]),
        ("ann", "dog-2", "view", DEFAULT_WEIGHTS["view"]),
        ("ann", "dog-3", "wishlist", 1.5),
    ]
    assert abs(rows[0][4] - datetime.now(UTC)) < timedelta(minutes=1)
    assert rows[1][4] == then

    csv = tmp_path / "events.csv"
    csv.write_text(
        "user,item,event,timestamp,weight\n"
        "bob,car-1,like,2026-03-01T10:00:00Z,\n"
        "bob,car-2,cart,1767225600,\n"  # Unix seconds: 2026-01-01
        "eve,car-1,purchase,,\n"
        "eve,car-3,view,2026-03-01,-2\n"
    )
    out = mmq("events", "load", "--collection", name, str(csv))
    assert out.stdout.startswith(f"recorded 4 events in collection {name!r}")
    loaded = events_of(client, name)[3:]
    assert [r[:4] for r in loaded] == [
        ("bob", "car-1", "like", 2.0),
        ("bob", "car-2", "cart", 3.0),
        ("eve", "car-1", "purchase", 5.0),
        ("eve", "car-3", "view", -2.0),
    ]
    assert loaded[1][4] == datetime(2026, 1, 1, tzinfo=UTC)

    # A bad row is named by its line, and nothing of the file is recorded.
    csv.write_text("user,item,event,timestamp\nbob,car-4,view,\nbob,car-5,view,yesterday\n")
    failed = mmq("events", "load", "--collection", name, str(csv), check=False)
    assert failed.returncode != 0
    assert f"{csv} line 3: time 'yesterday'" in failed.stderr
    assert len(events_of(client, name)) == 7

    added = mmq("events", "add", "--collection", name, "--user", "bob", "--item", "car-9",
                "--event", "purchase")  # fmt: skip
    assert added.returncode == 0
    assert events_of(client, name)[-1][:4] == ("bob", "car-9", "purchase", 5.0)


def test_recommend_finds_the_liked_concepts_items_and_says_because(
    client: Client, shop: str
) -> None:
    history = ids("dog", 0, 1, 2)
    for event, item in zip(("purchase", "like", "view"), history, strict=True):
        client.record("dora", shop, item, event)
    result = recommend(client, "dora", shop, k=5)
    assert (result.method, result.cold_start, result.history) == ("centroid", False, 3)
    assert [h.metadata["concept"] for h in result.hits] == ["dog"] * 5
    assert not {h.external_id for h in result.hits} & set(history)  # seen: left out
    for hit in result.hits:
        assert hit.because and set(hit.because) <= set(history)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    text = mmq("recommend", "--collection", shop, "--user", "dora", "-k", "2").stdout
    assert text.startswith("for 'dora': centroid over 3 history items\n")
    assert "because: dog-" in text


def test_a_long_history_is_ranked_by_the_svm(client: Client, shop: str) -> None:
    history = ids("space", *range(10))
    client.record_many(shop, [dict(user="sam", external_id=e, event="like") for e in history])
    result = recommend(client, "sam", shop, k=2)
    assert (result.method, result.history) == ("svm", 10)
    assert {h.external_id for h in result.hits} == set(ids("space", 10, 11))
    assert all(set(h.because) <= set(history) and h.because for h in result.hits)


def test_seen_items_come_back_only_when_asked(client: Client, shop: str) -> None:
    history = ids("food", 0, 1, 2, 3)
    client.record_many(shop, [dict(user="fay", external_id=e, event="cart") for e in history])
    default = recommend(client, "fay", shop, k=8)
    assert not {h.external_id for h in default.hits} & set(history)
    everything = recommend(client, "fay", shop, k=8, exclude_seen=False)
    assert set(history) <= {h.external_id for h in everything.hits}
    # Filters and targets hold as in a search: no food item is a car.
    cars = recommend(client, "fay", shop, k=3, filter={"concept": "car"})
    assert [h.metadata["concept"] for h in cars.hits] == ["car"] * 3
    assert recommend(client, "fay", shop, targets=["image"]).hits == []


def test_old_events_weigh_less_than_new_ones(client: Client, shop: str) -> None:
    # Two cars bought a year ago (12 half-lives) against one dog looked at today.
    long_ago = datetime.now(UTC) - timedelta(days=365)
    for item in ids("car", 0, 1):
        client.record("olga", shop, item, "purchase", at=long_ago)
    client.record("olga", shop, "dog-5", "view")
    result = recommend(client, "olga", shop, k=3)
    assert [h.metadata["concept"] for h in result.hits] == ["dog"] * 3
    assert result.hits[0].because[0] == "dog-5"


def test_a_user_without_history_gets_the_popular_items_and_is_told(
    client: Client, shop: str
) -> None:
    crowd = [("u1", "car-7", "purchase"), ("u2", "car-7", "view"), ("u3", "food-9", "like")]
    for user, item, event in crowd:
        client.record(user, shop, item, event)
    client.record("newcomer", shop, "not-in-the-collection", "view")
    result = recommend(client, "newcomer", shop, k=50)
    assert (result.method, result.cold_start, result.history_missing) == ("popular", True, 1)
    popular = [h.external_id for h in result.hits]
    assert popular[0] == "car-7" and result.hits[0].score == 1.0  # 5 + 1: the most
    assert popular.index("food-9") > 0
    assert all(h.because == [] for h in result.hits)

    out = mmq("recommend", "--collection", shop, "--user", "nobody", "-k", "2", "--json")
    shown = json.loads(out.stdout)
    assert (shown["method"], shown["cold_start"]) == ("popular", True)
    assert len(shown["hits"]) == 2
    assert "has no history" in out.stderr


def test_the_events_migration_goes_down_and_up(fresh_database_url: str) -> None:
    from mmq.store.migrate import downgrade, upgrade

    def tables() -> set[str]:
        engine = create_engine(fresh_database_url)
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
        engine.dispose()
        return names

    upgrade(fresh_database_url)
    assert "events" in tables()
    downgrade(fresh_database_url, "0005")
    assert "events" not in tables()
    upgrade(fresh_database_url)
    assert "events" in tables()
