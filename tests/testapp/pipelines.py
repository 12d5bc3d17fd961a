"""Pipelines the test suite triggers; discovered like any app's pipelines.py."""

from __future__ import annotations

from djap import Join, Pipeline
from tests.testapp.jobs import (
    AddOne,
    CountChars,
    DoubleIt,
    Duplicate,
    FailWhenTold,
    HangFirstAttempt,
    Report,
    SplitRange,
    SquareIt,
    SumAll,
)


class ChainOfThree(Pipeline):
    jobs = [CountChars, DoubleIt, AddOne]


class FailInTheMiddle(Pipeline):
    jobs = [CountChars, FailWhenTold, AddOne]


class SquareAndSum(Pipeline):
    jobs = [SplitRange, SquareIt, Join(SumAll)]


class SquareTwiceAndSum(Pipeline):
    """A fan-out inside each branch: the join waits for every leaf."""

    jobs = [SplitRange, Duplicate, SquareIt, Join(SumAll), Report]


class SurviveAKill(Pipeline):
    jobs = [CountChars, HangFirstAttempt, AddOne]


class OutputsDoNotFit(Pipeline):
    """DoubleIt's outputs ({"n": ...}) are not CountChars' inputs ({"text": ...})."""

    jobs = [DoubleIt, CountChars]
