"""`mmq eval`'s arithmetic: recall@k from the rank of each query's relevant hit."""

from __future__ import annotations

from mmq.cli.evaluate import _rank, _recall


def test_recall_at_k_counts_ranks_below_k() -> None:
    ranks = [0, 1, 4, 5, 9, 10, None, 0]  # 0-based rank of the relevant hit; None: not found
    assert (_recall(ranks, 1), _recall(ranks, 5), _recall(ranks, 10)) == (25.0, 50.0, 75.0)
    assert _recall([0, None, None], 1) == 33.33  # rounded to 2 decimals


def test_rank_is_the_first_relevant_position() -> None:
    assert _rank(["a", "b", "c"], {"c"}) == 2
    assert _rank(["a", "c", "c"], {"c", "a"}) == 0
    assert _rank(["a", "b"], {"z"}) is None
    assert _rank([], {"z"}) is None
