"""Tests of the online model adapter against River's own BiasedMF."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from river import optim, reco

from icpns_stream.item_catalog import ItemCatalog
from icpns_stream.model import MAX_LEARNING_RATE, OnlineModel

Step = tuple[str, str, float]


def make_stream(n_steps: int, n_users: int, n_items: int, seed: int) -> list[Step]:
    """Return random (user, item, label) steps, a quarter of them clicks."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_steps)
    items = rng.integers(0, n_items, n_steps)
    labels = (rng.random(n_steps) < 0.25).astype(float)
    return [
        (f"u{u}", f"i{i}", float(y))
        for u, i, y in zip(users, items, labels, strict=True)
    ]


def click_stream(n_clicks: int, n_users: int, n_items: int, seed: int) -> list[Step]:
    """Return clicks on Zipf-popular items, each followed by 4 uniform negatives."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    popularity /= popularity.sum()
    steps = []
    for _ in range(n_clicks):
        user_id = f"u{rng.integers(n_users)}"
        steps.append((user_id, f"i{rng.choice(n_items, p=popularity)}", 1.0))
        steps.extend((user_id, f"i{j}", 0.0) for j in rng.integers(0, n_items, 4))
    return steps


def learn(model: OnlineModel, steps: list[Step], check_every: int = 0) -> None:
    """Add each step's item to the catalog, then learn the step."""
    for count, (user_id, item_id, label) in enumerate(steps, start=1):
        model.catalog.add(item_id)
        model.learn_one(user_id, item_id, label)
        if check_every and count % check_every == 0:
            model._check()


def store_sizes(model: OnlineModel) -> tuple[int, int, int, int]:
    mf = model._mf
    return len(mf.u_biases), len(mf.i_biases), len(mf.u_latents), len(mf.i_latents)


def plain_river(learning_rate: float, seed: int) -> reco.BiasedMF:
    """River's BiasedMF configured as the adapter configures it."""
    return reco.BiasedMF(
        n_factors=8,
        bias_optimizer=optim.SGD(learning_rate),
        latent_optimizer=optim.SGD(learning_rate),
        loss=optim.losses.Log(),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
        seed=seed,
    )


def test_scorer_agrees_with_river_predict_one() -> None:
    # 150 items push the mirrors through two doublings.
    model = OnlineModel(ItemCatalog(), n_factors=8, learning_rate=0.1, seed=3)
    steps = make_stream(3000, n_users=30, n_items=150, seed=0)
    learn(model, steps, check_every=7)
    assert len(model.catalog) == 150
    rng = np.random.default_rng(1)
    pairs = [steps[j] for j in rng.integers(0, len(steps), 300)]
    largest = 0.0
    for user_id, item_id, _ in pairs:
        # Both ids were learned, so River's own predict_one stores nothing new.
        expected = model._mf.predict_one(user_id, item_id)
        index = model.catalog.index_of(item_id)
        assert index is not None
        full = model.score_items(user_id)
        some = model.score_items(user_id, np.array([index, 0, index]))
        largest = max(largest, abs(full[index] - expected))
        assert abs(some[0] - expected) <= 1e-9
        assert some[0] == pytest.approx(some[2], abs=1e-12)
        assert some[1] == pytest.approx(full[0], abs=1e-12)
        assert abs(model.predict_one(user_id, item_id) - expected) <= 1e-9
    assert largest <= 1e-9
    # The scores are not all alike: the test would notice a constant scorer.
    assert np.ptp(model.score_items("u0")) > 0.1


def test_scoring_unknown_ids_stores_nothing_and_changes_nothing() -> None:
    steps = make_stream(500, n_users=10, n_items=40, seed=2)
    model = OnlineModel(ItemCatalog(), n_factors=8, seed=5)
    twin = OnlineModel(ItemCatalog(), n_factors=8, seed=5)
    learn(model, steps[:250])
    learn(twin, steps[:250])

    # Items in the catalog that River never saw, and users nobody learned.
    for j in range(40, 60):
        model.catalog.add(f"i{j}")
    sizes = store_sizes(model)
    for user in range(100):
        scores = model.score_items(f"stranger{user}")
        assert scores.shape == (60,)
        assert np.all(np.isfinite(scores))
        model.score_items(f"stranger{user}", np.arange(40, 60))
        model.predict_one(f"stranger{user}", f"i{user}")
        model.predict_one("u1", f"never{user}")
    assert store_sizes(model) == sizes
    model._check()

    # The seeded initialiser was not drawn from either: learning goes on alike.
    learn(model, steps[250:])
    learn(twin, steps[250:])
    for j in range(40, 60):
        twin.catalog.add(f"i{j}")
    for user_id in (f"u{user}" for user in range(10)):
        assert np.array_equal(model.score_items(user_id), twin.score_items(user_id))


def test_unknown_user_and_unlearned_item_scores() -> None:
    catalog = ItemCatalog()
    model = OnlineModel(catalog, n_factors=4, learning_rate=0.2, seed=0)
    learn(model, [("u", "a", 1.0), ("v", "b", 0.0), ("u", "b", 1.0)])
    catalog.add("c")
    mf = model._mf
    mean = mf.global_mean.get()
    assert mean == pytest.approx(2 / 3)

    # A new user: the items' biases only, on top of the label mean.
    stranger = model.score_items("stranger")
    expected = [mean + mf.i_biases["a"], mean + mf.i_biases["b"], mean]
    assert stranger.tolist() == pytest.approx(expected, abs=1e-15)

    # An item never learned: the user's bias only.
    assert model.score_items("u")[2] == pytest.approx(mean + mf.u_biases["u"])
    assert model.predict_one("u", "c") == pytest.approx(mean + mf.u_biases["u"])
    assert model.predict_one("u", "elsewhere") == model.predict_one("u", "c")


def test_same_seed_same_scores_and_other_seed_other_scores() -> None:
    steps = make_stream(400, n_users=8, n_items=30, seed=4)
    scores = []
    for seed in (7, 7, 8):
        model = OnlineModel(ItemCatalog(), n_factors=8, seed=seed)
        learn(model, steps)
        scores.append(model.score_items("u3"))
    assert np.array_equal(scores[0], scores[1])
    assert not np.allclose(scores[0], scores[2])


def test_pickle_round_trip_scores_and_learns_identically() -> None:
    steps = make_stream(800, n_users=12, n_items=90, seed=6)
    model = OnlineModel(ItemCatalog(), n_factors=8, learning_rate=0.15, seed=2)
    learn(model, steps[:400])
    copy = pickle.loads(pickle.dumps(model))
    copy._check()
    users = [f"u{user}" for user in range(12)]
    for user_id in users:
        assert np.array_equal(model.score_items(user_id), copy.score_items(user_id))

    # New users and items draw from the pickled initialiser state in both.
    later = [*steps[400:], ("newcomer", "brand-new", 1.0)]
    learn(model, later)
    learn(copy, later)
    copy._check()
    for user_id in [*users, "newcomer"]:
        assert np.array_equal(model.score_items(user_id), copy.score_items(user_id))


def test_constraint_is_inactive_at_a_sane_learning_rate() -> None:
    # At lr 0.1 the adapter must be exactly River's model.
    steps = make_stream(2000, n_users=20, n_items=50, seed=8)
    model = OnlineModel(ItemCatalog(), n_factors=8, learning_rate=0.1, seed=4)
    river_model = plain_river(0.1, seed=4)
    learn(model, steps)
    for user_id, item_id, label in steps:
        river_model.learn_one(user_id, item_id, label)
    for user_id, item_id, _ in steps[:200]:
        assert model.predict_one(user_id, item_id) == river_model.predict_one(
            user_id, item_id
        )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("learning_rate", [5.0, MAX_LEARNING_RATE])
def test_high_learning_rate_stays_finite_and_bounded(learning_rate: float) -> None:
    steps = click_stream(1500, n_users=10, n_items=20, seed=9)

    # Plain River overflows on this stream: the guard has something to do.
    river_model = plain_river(learning_rate, seed=0)
    for user_id, item_id, label in steps:
        river_model.learn_one(user_id, item_id, label)
    latents = np.array(list(river_model.i_latents.values()))
    assert not np.all(np.isfinite(latents))

    model = OnlineModel(ItemCatalog(), n_factors=8, learning_rate=learning_rate, seed=0)
    for start in range(0, len(steps), 750):
        learn(model, steps[start : start + 750])
        model._check()
        scores = model.score_items("u1")
        assert np.all(np.isfinite(scores))
        assert np.all(np.abs(scores) <= 1 + 3 * model.max_norm**2)

    # The constraint binds: some latent vector sits on the sphere.
    norms = [np.linalg.norm(v) for v in model._mf.i_latents.values()]
    assert max(norms) == pytest.approx(model.max_norm)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"learning_rate": -0.1}, "got -0.1"),
        ({"learning_rate": math.nan}, "got nan"),
        ({"learning_rate": math.inf}, "got inf"),
        ({"learning_rate": 2e6}, r"at most 1e\+06"),
        ({"n_factors": 0}, "n_factors must be positive, got 0"),
        ({"n_factors": 2.5}, "n_factors must be an integer, got 2.5"),
        ({"n_factors": True}, "n_factors must be an integer"),
        ({"max_norm": 0.0}, "max_norm must be positive"),
        ({"max_norm": math.inf}, "got inf"),
    ],
)
def test_parameters_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OnlineModel(ItemCatalog(), **kwargs)  # type: ignore[arg-type]


def test_bad_calls_raise_and_store_nothing() -> None:
    catalog = ItemCatalog()
    catalog.add("a")
    model = OnlineModel(catalog, n_factors=4)
    with pytest.raises(ValueError, match="item_id 'b' is not in the catalog"):
        model.learn_one("u", "b", 1.0)
    with pytest.raises(ValueError, match=r"label must be 0\.0 or 1\.0, got 0\.5"):
        model.learn_one("u", "a", 0.5)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 1\)"):
        model.score_items("u", np.array([0, 1]))
    assert store_sizes(model) == (0, 0, 0, 0)
    model._check()


def test_indices_argument_is_left_unchanged() -> None:
    model = OnlineModel(ItemCatalog(), n_factors=4)
    learn(model, make_stream(100, n_users=3, n_items=10, seed=1))
    indices = np.array([3, 1, 4, 1], dtype=np.int64)
    model.score_items("u1", indices)
    assert indices.tolist() == [3, 1, 4, 1]
    assert model.score_items("u1", np.array([], dtype=np.intp)).shape == (0,)
