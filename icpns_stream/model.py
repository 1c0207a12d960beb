"""The online recommender: River's biased matrix factorisation with a fast scorer."""

from __future__ import annotations

import math

import numpy as np
from river import optim, reco

from icpns_stream.item_catalog import ItemCatalog
from icpns_stream.types import ItemId, UserId

__all__ = ["MAX_LEARNING_RATE", "MAX_NORM", "OnlineModel"]

#: Upper bound on the learning rate: one SGD step moves a latent entry by at most
#: ``learning_rate * max_norm``, which must stay far from float overflow.
MAX_LEARNING_RATE = 1e6

#: Upper bound on ``max_norm``, for the same reason.
MAX_NORM = 1e6

# Mirrors start this large and double when the catalog outgrows them.
_INITIAL_CAPACITY = 64


class OnlineModel:
    """Biased matrix factorisation learned one labelled click at a time.

    The model is River's ``reco.BiasedMF`` with a logistic loss (a click is 1, a
    sampled negative 0), plain SGD on biases and latent vectors, no L2 penalty,
    and latent vectors drawn from a seeded normal distribution. A score is the
    logit ``mean + b_u + b_i + <v_u, v_i>``, where ``mean`` is the running mean
    of the labels (the same for every item, so it never changes a ranking).

    Item biases and latent vectors are mirrored in numpy arrays aligned with the
    catalog's item indices, so ranking every item for a user is one
    matrix-vector product instead of one River call per item.

    Parameters
    ----------
    catalog
        The item catalog shared with the engine; its indices index the scores.
    n_factors
        Number of latent factors.
    learning_rate
        SGD step size for biases and latent vectors, in (0, 1e6].
    seed
        Seed of the latent initialiser (normal, mean 0, standard deviation 0.1).
    max_norm
        Largest Euclidean norm of a latent vector, in (0, 1e6]. After each step
        a longer vector is scaled back onto the ball (max-norm constraint) and a
        bias is clipped to ``[-max_norm**2, max_norm**2]``, so every score lies
        within ``1 + 3 * max_norm**2`` of zero.

    Attributes
    ----------
    catalog
        The shared item catalog.
    n_factors, learning_rate, seed, max_norm
        The parameters above.

    Notes
    -----
    Why the max-norm constraint: the logistic loss bounds the gradient of the
    score to [-1, 1], so River's ``clip_gradient`` never acts, but the gradient
    of a latent vector is that value times the other vector, and the two can
    feed each other geometrically. With plain SGD on the ml-100k stream (4
    uniform negatives per click) latent entries reached 38 within 20,000 clicks
    at a learning rate of 0.5, 2e50 at 1.0, and ``nan`` at 2.0 and above. With
    ``max_norm=10`` the constraint never acted over the whole stream at learning
    rates up to 0.3 (largest latent norm 5.4), so the model is then exactly
    River's.

    A user or item the model never learned from scores with a zero bias and a
    zero latent vector (the prior mean of the dot product), and scoring never
    writes to River's parameter stores: those are defaultdicts, and a read of an
    unknown id would both store it and draw from the seeded initialiser,
    changing what later learning does.

    ``learn_one`` costs one River update plus O(n_factors) to refresh the
    item's mirror (amortised: the mirrors double when full). ``score_items``
    costs O(n_items * n_factors); ``predict_one`` O(n_factors). The mirrors take
    ``8 * (n_factors + 1)`` bytes per catalog item.

    References
    ----------
    Koren, Bell and Volinsky (2009), "Matrix factorization techniques for
    recommender systems", IEEE Computer 42(8). Srebro and Shraibman (2005),
    "Rank, trace-norm and max-norm", COLT.

    Examples
    --------
    >>> catalog = ItemCatalog()
    >>> for item in ["a", "b", "c"]:
    ...     _ = catalog.add(item)
    >>> model = OnlineModel(catalog, n_factors=4, learning_rate=0.5, seed=1)
    >>> model.learn_one("u", "a", 1.0)
    >>> model.learn_one("u", "b", 0.0)
    >>> [round(float(s), 4) for s in model.score_items("u")]
    [0.4629, -0.0358, 0.3023]
    >>> round(model.predict_one("u", "a"), 4), round(model.predict_one("new", "a"), 4)
    (0.4629, 0.6318)
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        n_factors: int = 32,
        learning_rate: float = 0.1,
        seed: int = 0,
        max_norm: float = 10.0,
    ) -> None:
        # Reject values that would make River fail late or drift into overflow.
        if isinstance(n_factors, bool) or not isinstance(n_factors, int):
            raise ValueError(f"n_factors must be an integer, got {n_factors!r}")
        if n_factors < 1:
            raise ValueError(f"n_factors must be positive, got {n_factors}")
        if not 0.0 < learning_rate <= MAX_LEARNING_RATE:
            raise ValueError(
                f"learning_rate must be positive, finite and at most "
                f"{MAX_LEARNING_RATE:g}, got {learning_rate}"
            )
        if not 0.0 < max_norm <= MAX_NORM:
            raise ValueError(
                f"max_norm must be positive, finite and at most {MAX_NORM:g}, "
                f"got {max_norm}"
            )
        self.catalog = catalog
        self.n_factors = n_factors
        self.learning_rate = float(learning_rate)
        self.seed = seed
        self.max_norm = float(max_norm)
        # max_norm**2 bounds both a latent vector's squared norm and a bias.
        self._max_square = self.max_norm**2

        # River copies the optimisers, so biases and latents step independently.
        self._mf = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(self.learning_rate),
            latent_optimizer=optim.SGD(self.learning_rate),
            loss=optim.losses.Log(),
            l2_bias=0.0,
            l2_latent=0.0,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )

        # Items not learned yet keep the zero bias and vector of the prior.
        self._item_bias = np.zeros(_INITIAL_CAPACITY)
        self._item_latents = np.zeros((_INITIAL_CAPACITY, n_factors))

    def learn_one(self, user_id: UserId, item_id: ItemId, label: float) -> None:
        """Take one SGD step on a click (``label`` 1.0) or a negative (0.0).

        The item must already be in the catalog.
        """
        # The mirror row is addressed by catalog index, so the item needs one.
        index = self.catalog.index_of(item_id)
        if index is None:
            raise ValueError(
                f"item_id {item_id!r} is not in the catalog; add it before learning"
            )

        # River maps any label other than 0 to 1 by truncation: only accept both.
        if label != 0.0 and label != 1.0:
            raise ValueError(f"label must be 0.0 or 1.0, got {label!r}")
        mf = self._mf
        mf.learn_one(user_id, item_id, float(label))

        # Both ids are known to River now, so indexing creates nothing.
        self._constrain(mf.u_latents[user_id])
        self._constrain(mf.i_latents[item_id])
        mf.u_biases[user_id] = self._clip_bias(mf.u_biases[user_id])
        mf.i_biases[item_id] = self._clip_bias(mf.i_biases[item_id])

        # Refresh the only item row this step changed.
        self._reserve(index + 1)
        self._item_bias[index] = mf.i_biases[item_id]
        self._item_latents[index] = mf.i_latents[item_id]

    def score_items(
        self, user_id: UserId, indices: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the scores of the items at catalog ``indices`` (None: all).

        The result is a new float64 array; higher means more likely clicked.
        """
        # Items added to the catalog but not learned yet need zero rows.
        n_items = len(self.catalog)
        self._reserve(n_items)
        if indices is None:
            biases = self._item_bias[:n_items]
            latents = self._item_latents[:n_items]
        else:
            indices = np.asarray(indices, dtype=np.intp)
            if indices.size and (indices.min() < 0 or indices.max() >= n_items):
                raise ValueError(
                    f"indices must lie in [0, {n_items}), got values from "
                    f"{indices.min()} to {indices.max()}"
                )
            biases = self._item_bias[indices]
            latents = self._item_latents[indices]

        # Read the user with .get so an unknown user is not stored.
        mf = self._mf
        scores = biases + (mf.global_mean.get() + mf.u_biases.get(user_id, 0.0))
        user_latent = mf.u_latents.get(user_id)
        if user_latent is not None:
            scores += latents @ user_latent
        return scores

    def predict_one(self, user_id: UserId, item_id: ItemId) -> float:
        """Return the score of one item for one user (unknown ids are allowed)."""
        # The same sum as River's predict_one, without storing unknown ids.
        mf = self._mf
        score = mf.global_mean.get() + mf.u_biases.get(user_id, 0.0)
        score += mf.i_biases.get(item_id, 0.0)
        user_latent = mf.u_latents.get(user_id)
        item_latent = mf.i_latents.get(item_id)
        if user_latent is not None and item_latent is not None:
            score += float(np.dot(user_latent, item_latent))
        return float(score)

    def _constrain(self, latent: np.ndarray) -> None:
        # River updates this array in place, so scaling it here updates River.
        squared = float(latent @ latent)
        if squared > self._max_square:
            if math.isfinite(squared):
                latent *= self.max_norm / math.sqrt(squared)
            else:
                # The sum of squares overflowed: scale down first, then measure.
                latent /= np.abs(latent).max()
                latent *= self.max_norm / float(np.linalg.norm(latent))

    def _clip_bias(self, bias: float) -> float:
        return min(max(bias, -self._max_square), self._max_square)

    def _reserve(self, size: int) -> None:
        capacity = len(self._item_bias)
        if size <= capacity:
            return
        while capacity < size:
            capacity *= 2
        biases = np.zeros(capacity)
        biases[: len(self._item_bias)] = self._item_bias
        latents = np.zeros((capacity, self.n_factors))
        latents[: len(self._item_latents)] = self._item_latents
        self._item_bias, self._item_latents = biases, latents

    def _check(self) -> None:
        mf = self._mf
        capacity = len(self._item_bias)
        assert self._item_latents.shape == (capacity, self.n_factors)

        # River knows only items of the catalog, and the mirrors match River.
        assert set(mf.i_biases) == set(mf.i_latents)
        assert set(mf.u_biases) == set(mf.u_latents)
        for item_id in mf.i_biases:
            assert isinstance(item_id, str)
            index = self.catalog.index_of(item_id)
            assert index is not None and index < capacity
        for index, item_id in enumerate(self.catalog.ids[:capacity]):
            if item_id in mf.i_biases:
                assert self._item_bias[index] == mf.i_biases[item_id]
                assert np.array_equal(self._item_latents[index], mf.i_latents[item_id])
            else:
                assert self._item_bias[index] == 0.0
                assert not self._item_latents[index].any()
        assert not self._item_bias[len(self.catalog) :].any()
        assert not self._item_latents[len(self.catalog) :].any()

        # The constraint holds everywhere (a rounding ulp of slack).
        bound = self.max_norm * (1 + 1e-12)
        for store in (mf.u_latents, mf.i_latents):
            for latent in store.values():
                assert np.all(np.isfinite(latent))
                assert float(np.linalg.norm(latent)) <= bound
        for biases in (mf.u_biases, mf.i_biases):
            for bias in biases.values():
                assert abs(bias) <= self._max_square
