"""Settings for scripts/bench: the sample project's, with DEBUG off as in production.

With DEBUG on, Django keeps and formats every query, which slows enqueue noticeably.
"""

from mysite.settings import *  # noqa: F403

DEBUG = False
