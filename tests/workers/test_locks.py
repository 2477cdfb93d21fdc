"""The handlers' distributed lock: a lease with an owner check and a fencing token."""

from __future__ import annotations

import threading

import pytest

from chalicelib.queue.locks import DistributedLock, LockLost, LockNotAcquired, LockScripts
from chalicelib.service.deps import Services
from tests.helpers import wait_until


def make(services: Services, name: str = "res", ttl_s: float = 5.0) -> DistributedLock:
    return DistributedLock(LockScripts(services.redis), services.keys, name, ttl_s=ttl_s)


def test_twenty_contenders_one_holder_at_a_time_with_increasing_fences(
    services: Services,
) -> None:
    scripts = LockScripts(services.redis)
    inside = 0
    fences: list[int] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def contender() -> None:
        nonlocal inside
        try:
            for _ in range(3):
                lock = DistributedLock(scripts, services.keys, "shared", ttl_s=5)
                fence = lock.acquire(timeout_s=30)
                with guard:
                    inside += 1
                    assert inside == 1, "two holders at once"
                    fences.append(fence)
                threading.Event().wait(0.001)
                with guard:
                    inside -= 1
                assert lock.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contender) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(fences) == 60
    assert fences == sorted(fences) and len(set(fences)) == 60  # strictly increasing


def test_release_and_extend_by_a_non_owner_are_refused(services: Services) -> None:
    holder = make(services)
    fence = holder.acquire()
    intruder = make(services)
    intruder.fence = fence  # even knowing the fence, another owner cannot release
    assert intruder.release() is False
    intruder.fence = fence
    with pytest.raises(LockLost):
        intruder.extend()
    with pytest.raises(LockNotAcquired):
        make(services).acquire(blocking=False)
    assert holder.release() is True
    assert make(services).acquire(blocking=False) == fence + 1


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_touch_it(
    services: Services,
) -> None:
    old = make(services, ttl_s=0.15)
    first = old.acquire()
    new = make(services)
    second = wait_until(lambda: new.try_acquire()[0], timeout_s=3, what="the expired lock")
    assert second > first
    with pytest.raises(LockLost):
        old.extend()
    assert old.release() is False
    assert new.extend(10) > 0 and new.release() is True


def test_reacquiring_own_live_lock_keeps_its_fence(services: Services) -> None:
    lock = make(services)
    fence = lock.acquire()
    assert lock.acquire(blocking=False) == fence
    with lock as again:  # context manager: acquire, then release on exit
        assert again == fence
    assert make(services).acquire(blocking=False) == fence + 1
