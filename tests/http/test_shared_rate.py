"""A region's FHIR rate shared by its parallel batches (``phone_sync.http.pacing.SharedRate``).

The batches are simulated on one clock (the processes the scheduler starts as slots free up, each with the
real limiter and share); the tests check the ceiling over every second of the run, and that the rate a
finished batch leaves is used by the others instead of idling until the next batch starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from phone_sync.http.pacing import RateLimiter, SharedRate

TOTAL, MOST = 20.0, 4


@dataclass
class Batch:
    """One batch process: starts running at ``began``, sends its first request ``startup`` s later."""

    began: float
    requests: int
    startup: float
    now: float = 0.0
    ended: float | None = None
    sent: list[float] = field(default_factory=list)
    limiter: RateLimiter | None = None

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def simulate(batches: int, requests: int, *, shared: bool, gap: float = 1.5, startup: float = 1.0) -> list[Batch]:
    """Run ``batches`` batches ``MOST`` at a time, the next one ``gap`` s after a slot frees (the scheduler);
    batches need ``requests`` requests, give or take a fifth (rows found or not, phones changed or not), each
    20 ms on the wire. Events are taken in the order of their time."""
    done: list[Batch] = []
    running: list[Batch] = []
    waiting = list(range(batches))

    def count_running_at(asker: Batch) -> int:
        return sum(1 for b in done + running if b.began <= asker.now and (b.ended is None or b.ended > asker.now))

    def start(at: float) -> None:
        number = waiting.pop(0)
        size = requests + requests * ((number * 7) % 5 - 2) // 10
        batch = Batch(began=at, requests=size, startup=startup + 0.1 * (number % 3), now=at)
        batch.now = at + batch.startup
        clock = lambda: batch.now  # noqa: E731 - each process has its own clock
        rate = (
            SharedRate(TOTAL, MOST, lambda: count_running_at(batch), began=at, clock=clock)
            if shared
            else TOTAL / MOST
        )
        batch.limiter = RateLimiter(rate, clock=clock, sleep=batch.sleep)
        running.append(batch)

    for _ in range(min(MOST, batches)):
        start(0.0)
    while running:
        batch = min(running, key=lambda b: b.now)
        if len(batch.sent) == batch.requests:
            batch.ended = batch.now
            running.remove(batch)
            done.append(batch)
            if waiting:
                start(batch.ended + gap)
            continue
        assert batch.limiter is not None
        batch.limiter.acquire()
        batch.sent.append(batch.now)
        batch.now += 0.02
    return done


def busiest(batches: list[Batch], window: float) -> int:
    """The most requests sent in any ``window`` seconds of the run."""
    times = sorted(t for b in batches for t in b.sent)
    most, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def wall(batches: list[Batch]) -> float:
    return max(b.ended or 0.0 for b in batches)


@pytest.mark.parametrize("shared", [False, True], ids=["fixed share", "shared rate"])
@pytest.mark.parametrize(("startup", "gap"), [(1.0, 1.5), (0.1, 0.1), (0.3, 0.5)])
def test_the_region_rate_stays_the_ceiling_while_batches_come_and_go(shared: bool, startup: float, gap: float) -> None:
    batches = simulate(30, 60, shared=shared, startup=startup, gap=gap)

    assert len(batches) == 30
    for window in (1, 2, 5, 10):
        # Each batch's bucket may hold one request (a burst of one, as with the fixed share).
        assert busiest(batches, window) <= TOTAL * window + MOST, window


def test_a_finished_batch_leaves_its_share_to_the_others() -> None:
    fixed, shared = simulate(30, 60, shared=False), simulate(30, 60, shared=True)
    bound = sum(len(b.sent) for b in shared) / TOTAL

    assert wall(fixed) - bound > 20, "the fixed share idles a slot between batches (the model is right)"
    assert wall(shared) - bound < (wall(fixed) - bound) / 2, (wall(shared), wall(fixed), bound)
    assert any(b.limiter and b.limiter.rate > TOTAL / MOST for b in shared), "a batch alone took more"


def test_a_batch_alone_takes_the_whole_rate_and_counts_at_most_four_times_a_second() -> None:
    (batch,) = simulate(1, 100, shared=True)

    assert batch.limiter is not None
    assert batch.limiter.rate == TOTAL
    assert isinstance(batch.limiter.shared, SharedRate)
    seconds = (batch.ended or 0) - batch.began
    assert batch.limiter.shared.counts <= 4 * seconds + 1
    assert seconds < 100 / (TOTAL / MOST) / 2, "far faster than the fixed share"


def test_the_first_request_waits_until_the_others_can_have_counted_this_batch() -> None:
    batches = simulate(2, 3, shared=True, startup=0.1)

    # A batch above its fixed share trusts a count 0.3 s, and may then still sleep one request's spacing at
    # the fixed share (1 / 5 per second) before it sends.
    assert [b.sent[0] for b in batches] == pytest.approx([0.5, 0.5])


def test_a_batch_whose_start_up_outlasts_the_wait_never_waits() -> None:
    """A batch process spends about 0.6 s between being counted and its first request (the DAG parsed, its
    rows read): the others have counted it by then, so its first request goes at once."""
    batches = simulate(8, 3, shared=True, startup=0.6)

    assert [b.sent[0] - b.began for b in batches[:MOST]] == pytest.approx([b.startup for b in batches[:MOST]])


def test_a_batch_alone_sends_at_once() -> None:
    (batch,) = simulate(1, 3, shared=True, startup=0.1)

    assert batch.sent[0] == pytest.approx(0.1)
    assert batch.limiter is not None
    assert batch.limiter.rate == TOTAL


def test_a_batch_not_held_back_never_asks() -> None:
    now = [0.0]
    asked: list[int] = []

    def running() -> int:
        asked.append(1)
        return 1

    share = SharedRate(TOTAL, MOST, running, began=0.0, clock=lambda: now[0])
    limiter = RateLimiter(share, clock=lambda: now[0], sleep=lambda s: None)
    now[0] = 1.0
    for _ in range(3):
        limiter.acquire()
        now[0] += 1.0  # a request a second: far under the fixed share of 5 per second

    assert not asked
    assert limiter.rate == TOTAL / MOST


def test_a_batch_held_back_only_briefly_never_asks() -> None:
    """A generous rate (50 per second over 4 batches: 80 ms between requests) holds a batch back too little
    for a count to pay off: each is a round trip to Airflow's API server, the scarce part of a large run."""
    now = [0.0]
    asked: list[int] = []

    def running() -> int:
        asked.append(1)
        return 1

    share = SharedRate(50.0, MOST, running, began=0.0, clock=lambda: now[0])
    limiter = RateLimiter(share, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    now[0] = 1.0
    waited = sum(limiter.acquire() for _ in range(50))

    assert not asked
    assert waited > 3.5, "pacing held it back before every request"
    assert limiter.rate == 50.0 / MOST


def test_a_count_that_fails_means_the_fixed_share() -> None:
    now = [0.0]

    def running() -> int:
        raise ConnectionError("no supervisor")

    share = SharedRate(TOTAL, MOST, running, began=0.0, clock=lambda: now[0])
    now[0] = 1.0

    assert share.update(held_back=0.2) == TOTAL / MOST
    assert share.counts == 1
