"""Errors that mean "fix the set-up", as opposed to a passing outage that a retry may cure."""

from __future__ import annotations


class SetupError(RuntimeError):
    """The deployment or the region's set-up is wrong (a renamed column, a missing key, refused credentials).

    Retrying cannot fix it, so the task fails at once, without retries, with this message: it names the
    region's setting or resource to fix and what was found instead, and never holds patient data.
    """
