"""pytest support: the `djap_inline` fixture (registered by djap's pytest11 entry point).

    def test_signup_sends_mail(djap_inline):
        client.post("/signup/", {...})      # the view enqueues SendWelcomeMail
        assert mail.outbox                  # ...which already ran, after the commit

Nothing here imports Django at import time: pytest loads plugins before Django is set up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def djap_inline() -> Iterator[None]:
    """Run every job enqueued in the test in the test's process once its transaction commits."""
    from djap_django.inline import inline

    with inline():
        yield
