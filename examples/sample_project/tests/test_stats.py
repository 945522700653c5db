import pytest
from stats import mean, median, mode


def test_mean():
    assert mean([1, 2, 3, 4]) == 2.5


def test_mean_of_empty_list_fails():
    with pytest.raises(ValueError):
        mean([])


def test_median_of_odd_length():
    assert median([3, 1, 2]) == 2


def test_median_of_even_length():
    assert median([4, 1, 3, 2]) == 2.5


def test_mode():
    assert mode([1, 2, 2, 3]) == 2
