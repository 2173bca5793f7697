"""Two loopback servers that answer as told: ``origin`` (the server a connection names) and ``elsewhere``
(where its redirects point), each recording every request that reaches it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localservers.sinks.processes import Redirector


@pytest.fixture(scope="session")
def redirectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Redirector, Redirector]]:
    logs = tmp_path_factory.mktemp("redirectors")
    with Redirector(log_path=logs / "origin.log") as origin, Redirector(log_path=logs / "elsewhere.log") as other:
        yield origin, other


@pytest.fixture
def origin(redirectors: tuple[Redirector, Redirector]) -> Redirector:
    redirectors[0].clear()
    return redirectors[0]


@pytest.fixture
def elsewhere(redirectors: tuple[Redirector, Redirector]) -> Redirector:
    redirectors[1].clear()
    return redirectors[1]
