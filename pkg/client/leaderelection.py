"""Leader election on coordination.k8s.io/v1 Leases (client-go's leaderelection + LeaseLock).

    elector = LeaderElector(client, LeaderElectionConfig(name="kube-scheduler"),
                            on_started_leading=run_controllers,      # async, no arguments
                            on_stopped_leading=lambda: sys.exit(1))
    await elector.run()   # returns when leadership is lost or elector.stop() is called

Algorithm as upstream:

* candidates GET the Lease; a missing Lease is created with us as holder; a Lease whose holder is
  someone else is taken over only when it has not been renewed for leaseDurationSeconds *as seen
  by our own clock* (the time we last observed the record change, never the remote timestamps);
* taking over increments leaseTransitions and sets acquireTime; renewing keeps both and moves
  renewTime; every write is a PUT carrying the resourceVersion last read, so two candidates racing
  for the same Lease cannot both win (the loser gets 409 Conflict);
* the leader renews every retry_period; if no renewal succeeds within renew_deadline it has lost:
  on_started_leading's task is cancelled, then on_stopped_leading is called (upstream calls it
  whenever run() returns, whether or not we ever led);
* with release_on_cancel, stopping while leader writes an empty holderIdentity with
  leaseDurationSeconds 1 so another candidate can take over at once.

Defaults are upstream's: lease 15 s, renew deadline 10 s, retry period 2 s.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .rest import ApiError, Client, is_not_found
from kubelab.api.timefmt import micro_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]

JITTER_FACTOR = 1.2
LEASE_API_VERSION = "coordination.k8s.io/v1"


def default_identity() -> str:
    """hostname_<random uuid>, as kube-controller-manager and kube-scheduler use."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass
class LeaderElectionConfig:
    """Where the Lease lives, who we are, and the timing (seconds)."""

    name: str
    namespace: str = "kube-system"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = False

    def validate(self) -> None:
        """Raise ValueError for settings upstream rejects."""
        if not self.name:
            raise ValueError("lease name must not be empty")
        if not self.identity:
            raise ValueError("Lock identity is empty")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if self.lease_duration < 1:
            raise ValueError("leaseDuration must be greater than zero")
        if self.retry_period <= 0:
            raise ValueError("retryPeriod must be greater than zero")


class LeaderElector:
    """Runs one candidate. `run()` competes, leads, and returns when leadership ends."""

    def __init__(self, client: Client, config: LeaderElectionConfig, *,
                 on_started_leading: Callable[[], Awaitable[Any]],
                 on_stopped_leading: Callable[[], Any] | None = None,
                 on_new_leader: Callable[[str], Any] | None = None) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self._lease: Obj | None = None          # the Lease as last read or written
        self._observed: Obj = {}                 # its spec
        self._observed_time: float = 0.0         # loop.time() when the spec last changed
        self._reported_leader: str | None = None
        self._stop = asyncio.Event()
        self._lead_task: asyncio.Task | None = None

    # -- state ---------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.config.identity

    def is_leader(self) -> bool:
        """Whether the last observed record names us as holder."""
        return bool(self._observed.get("holderIdentity")) and \
            self._observed.get("holderIdentity") == self.config.identity

    @property
    def leader(self) -> str | None:
        """The last observed holder (None if none observed)."""
        return self._observed.get("holderIdentity") or None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _lease_valid(self) -> bool:
        duration = self._observed.get("leaseDurationSeconds") or 0
        return self._observed_time + float(duration) > self._now()

    def _set_observed(self, lease: Obj) -> None:
        self._lease = lease
        self._observed = dict(lease.get("spec") or {})
        self._observed_time = self._now()

    def _describe(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    # -- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask run() to give up (releasing the lease if release_on_cancel) and return."""
        self._stop.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; returns False when stopped. (asyncio.wait, not wait_for: on
        Python 3.11 wait_for can swallow a cancellation that races its timeout, and a cancelled
        elector must never keep running.)"""
        if self._stop.is_set():
            return False
        waiter = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, seconds))
        finally:
            waiter.cancel()
        return not done

    async def run(self) -> None:
        """Acquire, lead (on_started_leading runs as a task), keep renewing; return when lost
        or stopped. Cancelling run() is the same as stop()."""
        try:
            if not await self._acquire():
                return
            self._lead_task = asyncio.ensure_future(self._lead())
            await self._renew_loop()
        finally:
            await self._stop_leading()

    async def _lead(self) -> None:
        try:
            await self.on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("on_started_leading for lease %s failed", self._describe())

    async def _stop_leading(self) -> None:
        task, self._lead_task = self._lead_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self.config.renew_deadline)
        if self.config.release_on_cancel:
            await self.release()
        if self.on_stopped_leading is not None:
            try:
                result = self.on_stopped_leading()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_stopped_leading for lease %s failed", self._describe())

    async def _acquire(self) -> bool:
        log.info("attempting to acquire leader lease %s...", self._describe())
        while not self._stop.is_set():
            ok = await self._try_acquire_or_renew()
            self._maybe_report_transition()
            if ok:
                log.info("successfully acquired lease %s", self._describe())
                return True
            delay = self.config.retry_period * (1 + random.random() * JITTER_FACTOR)
            if not await self._sleep(delay):
                break
        return False

    async def _renew_loop(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            deadline = self._now() + cfg.renew_deadline
            renewed = False
            while not self._stop.is_set():
                remaining = deadline - self._now()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._try_acquire_or_renew()
                except TimeoutError:
                    renewed = False
                if renewed:
                    break
                remaining = deadline - self._now()
                if remaining <= 0 or not await self._sleep(min(cfg.retry_period, remaining)):
                    break
            self._maybe_report_transition()
            if self._stop.is_set():
                return
            if not renewed:
                log.info("failed to renew lease %s: timed out waiting for the condition", self._describe())
                return
            if not await self._sleep(cfg.retry_period):
                return

    # -- one attempt ----------------------------------------------------------------

    def _desired_spec(self) -> Obj:
        now = micro_time()
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }

    async def _put(self, spec: Obj) -> Obj:
        assert self._lease is not None
        body = dict(self._lease)
        body["metadata"] = dict(body.get("metadata") or {})
        body.setdefault("apiVersion", LEASE_API_VERSION)
        body.setdefault("kind", "Lease")
        body["spec"] = {**(self._lease.get("spec") or {}), **spec}
        return await self.client.update(LEASE_API_VERSION, "leases", body, self.config.namespace)

    async def _try_acquire_or_renew(self) -> bool:
        desired = self._desired_spec()

        # 1. fast path: we lead and our view is fresh, update optimistically
        if self.is_leader() and self._lease_valid() and self._lease is not None:
            desired["acquireTime"] = self._observed.get("acquireTime") or desired["acquireTime"]
            desired["leaseTransitions"] = self._observed.get("leaseTransitions") or 0
            try:
                self._set_observed(await self._put(desired))
                return True
            except Exception as e:  # noqa: BLE001
                log.info("failed to update lease %s optimistically: %s; falling back to slow path",
                         self._describe(), e)

        # 2. read the record, or create it
        try:
            lease = await self.client.get(LEASE_API_VERSION, "leases", self.config.namespace, self.config.name)
        except ApiError as e:
            if not is_not_found(e):
                log.warning("error retrieving resource lock %s: %s", self._describe(), e)
                return False
            body = {"apiVersion": LEASE_API_VERSION, "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": desired}
            try:
                created = await self.client.create(LEASE_API_VERSION, "leases", body, self.config.namespace)
            except Exception as ce:  # noqa: BLE001
                log.warning("error initially creating leader election record: %s", ce)
                return False
            self._set_observed(created)
            return True
        except Exception as e:  # noqa: BLE001
            log.warning("error retrieving resource lock %s: %s", self._describe(), e)
            return False

        # 3. check holder and expiry (by our clock, from when the record last changed)
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._set_observed(lease)
        else:
            self._lease = lease
        holder = spec.get("holderIdentity") or ""
        if holder and self._lease_valid() and not self.is_leader():
            log.debug("lock is held by %s and has not yet expired", holder)
            return False

        # 4. take over or renew
        if self.is_leader():
            desired["acquireTime"] = spec.get("acquireTime") or desired["acquireTime"]
            desired["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            desired["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            self._set_observed(await self._put(desired))
        except Exception as e:  # noqa: BLE001
            log.info("failed to update lock %s: %s", self._describe(), e)
            return False
        return True

    async def release(self) -> bool:
        """Give the lease up if we hold it: empty holder, leaseDurationSeconds 1."""
        if not self.is_leader() or self._lease is None:
            return True
        now = micro_time()
        spec = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                "leaseTransitions": self._observed.get("leaseTransitions") or 0}
        try:
            self._set_observed(await self._put(spec))
        except Exception as e:  # noqa: BLE001
            log.warning("failed to release lock %s: %s", self._describe(), e)
            return False
        log.info("released lease %s", self._describe())
        return True

    def _maybe_report_transition(self) -> None:
        holder = self._observed.get("holderIdentity") or ""
        if holder == (self._reported_leader or ""):
            return
        self._reported_leader = holder
        if holder:
            log.info("new leader elected for %s: %s", self._describe(), holder)
        if self.on_new_leader is not None and holder:
            try:
                result = self.on_new_leader(holder)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("on_new_leader failed")


async def run_until_stopped(client: Client, config: LeaderElectionConfig | None,
                            lead: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> bool:
    """A component's main loop: run `lead` (under leader election when config is given) until
    `stop` is set. Returns True if leadership was lost (the component should exit non-zero, as
    upstream's do), False on a requested stop."""
    if config is not None:
        elector = LeaderElector(client, config, on_started_leading=lead)
        work = asyncio.ensure_future(elector.run())
    else:
        elector = None
        work = asyncio.ensure_future(lead())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            work.result()
            return not stop.is_set()
        if elector is not None:
            elector.stop()
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(work)
            except TimeoutError:
                work.cancel()
        else:
            work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return False
    finally:
        stopping.cancel()
