"""Paired verification's drafts (engine.draft): what is proposed after the cell's reply agrees with, parts from and
rejoins its baseline's."""
from quantscreen.engine.draft import DraftPolicy, DraftSource, common_prefix

POLICY = DraftPolicy(aligned_tokens=4, lookup_tokens=3, max_ngram=3, min_ngram=2)


def test_while_aligned_the_baseline_continues():
    source = DraftSource([1, 2, 3, 4, 5, 6, 7, 99], [50, 51], POLICY)
    assert source.propose([1], budget=10) == [2, 3, 4, 5]  # aligned_tokens at a time
    assert source.propose([1, 2, 3, 4, 5], budget=10) == [6, 7, 99]  # the stop token is drafted too
    assert source.propose([1, 2], budget=2) == [3, 4]  # never more than the budget
    assert source.propose([1, 2], budget=0) == []


def test_after_parting_an_ngram_rejoins_the_baseline():
    source = DraftSource([10, 11, 12, 13, 14, 15, 16], [], POLICY)
    # the cell said 20 where the baseline said 11, then rejoined with 12, 13: the baseline's continuation of 12, 13
    assert source.propose([10, 20, 12, 13], budget=10) == [14, 15, 16]
    # no n-gram of two tokens matches anywhere: nothing is drafted (a one-token match is below min_ngram)
    assert source.propose([10, 20, 21, 13], budget=10) == []


def test_lookup_reads_the_prompt_and_the_reply_itself():
    prompt = [7, 8, 9, 30, 31]
    source = DraftSource([1, 2], prompt, POLICY)
    assert source.propose([5, 7, 8], budget=10) == [9, 30, 31]  # quoting the prompt
    looping = [40, 41, 42, 43, 40, 41]
    assert source.propose(looping, budget=10) == [42, 43, 40]  # a reply that repeats itself


def test_longest_ngram_wins_and_the_last_occurrence_is_used():
    source = DraftSource([1, 2, 3, 9, 2, 3, 8], [], POLICY)
    assert source.propose([5, 2, 3], budget=10) == [8]  # the last "2 3" in the baseline is followed by 8
    assert source.propose([1, 5, 9, 2, 3], budget=10) == [8]  # "9 2 3" (three tokens) beats "2 3"


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2
