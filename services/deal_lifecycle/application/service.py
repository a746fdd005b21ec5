"""The application service: the one place HTTP and NATS hand commands to.

Each command is: load the deal, check the idempotency receipt and the expected
version, call the aggregate, and save its new events together with the read-model
row and the receipt in one transaction.

Concurrency: a process runs one command per deal at a time (a lock per deal), so its
own commands never race each other. The store still refuses a second event at the same
version, which catches writers in other processes: a command that did not state a version
is re-run on the new one (up to CONFLICT_ATTEMPTS times, with jittered back-off); one
that did (If-Match) is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import structlog
from eventsourcing.application import AggregateNotFoundError, Application, ProjectorFunction, Repository, project_aggregate
from eventsourcing.domain import CanMutateAggregate, OriginatorVersionError
from eventsourcing.persistence import EventStore, IntegrityError, JSONTranscoder, Recording
from eventsourcing.utils import strtobool
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application import transcodings
from dealflow.deal_lifecycle.application.access import authorize
from dealflow.deal_lifecycle.application.clock import Clock, SystemClock
from dealflow.deal_lifecycle.application.command_table import BY_NAME, Call, DealCommand
from dealflow.deal_lifecycle.application.deal_locks import DealLocks
from dealflow.deal_lifecycle.application.read_model import CommandReceipt, Page, decode_cursor, encode_cursor, summary_of
from dealflow.deal_lifecycle.application.views import standing_concessions
from dealflow.deal_lifecycle.domain import deadlines
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.domain.deal import SERVICE, Deal, event_type
from dealflow.deal_lifecycle.domain.events import recorded_at
from dealflow.deal_lifecycle.domain.errors import CommandRefused, DealflowError, InvalidCommand, NotFound, SigningRefused
from dealflow.deal_lifecycle.domain.model import Attribution, Concession
from dealflow.deal_lifecycle.domain.policy import Policy

log = structlog.get_logger("dealflow.deals")


class VersionMismatch(CommandRefused):
    code = "version_mismatch"


class ConcurrentWrite(CommandRefused):
    code = "concurrent_write"


class StoreDamaged(CommandRefused):
    """The deal's events cannot be replayed (one is missing): the store was damaged or tampered with."""

    code = "store_damaged"


class IdempotencyKeyReused(DealflowError):
    code = "idempotency_key_reused"


class DealRepository(Repository[UUID]):
    """eventsourcing's repository, except that a deal loaded from a snapshot older than its stage
    anchors (Deal.ANCHORS_UNKNOWN) is replayed from its events: once per deal, until a new snapshot."""

    def _reconstruct_aggregate(self, aggregate_id: UUID, version: int | None, projector_func: ProjectorFunction[Any, Any]) -> Any:
        aggregate = super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        if aggregate.__dict__.pop(Deal.ANCHORS_UNKNOWN, False):
            aggregate = projector_func(None, self.event_store.get(originator_id=aggregate_id, lte=version))
        return aggregate


@dataclass(frozen=True)
class Outcome:
    """The deal right after the command, and the id of what the command created, if any."""

    deal: Deal
    created_id: str | None = None
    replayed: bool = False


# How often a command is re-run after a writer in another process took its version. Each
# process writes a deal one command at a time, so a conflict needs another process writing
# the same deal in the same few milliseconds, and each round someone wins: losing 50 rounds
# in a row, with up to 50 ms of jittered back-off between them, does not happen under a real
# workload. If it ever does, the caller gets 409 `concurrent_write` and nothing was stored.
CONFLICT_ATTEMPTS = 50

# Group commit, set in the store's environment (config.Settings): how long a batch waits for the
# saves of commands still under way (0: each command commits alone), and how many saves at most.
GROUP_COMMIT_MS, GROUP_COMMIT_MAX = "DEALFLOW_GROUP_COMMIT_MS", "DEALFLOW_GROUP_COMMIT_MAX"
DEFAULT_GROUP_COMMIT_MS, DEFAULT_GROUP_COMMIT_MAX = 2.0, 64


def _conflict_retries(attempts: int, on: type[BaseException], logger: Any = log) -> Retrying:
    def say(state: RetryCallState) -> None:
        # Visible in the logs, so operators can see cross-process contention on a deal.
        logger.info("conflict", outcome="retrying", attempt=state.attempt_number, of=attempts)

    return Retrying(
        retry=retry_if_exception_type(on),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.002, max=0.05),
        before_sleep=say,
        reraise=True,
    )


class DealService(Application[UUID]):
    name = "Deals"
    # A deal with thousands of events loads from its latest snapshot plus a short tail.
    snapshotting_intervals = {Deal: 100}  # noqa: RUF012 - the library's own class attribute
    conflict_retries = CONFLICT_ATTEMPTS

    def __init__(self, env: Mapping[str, str] | None = None, *, policy: Policy, clock: Clock | None = None) -> None:
        super().__init__(env)
        self.policy = policy
        # When facts happen and deadlines fall due: one clock, which tests can move (clock.py).
        self.clock: Clock = clock or SystemClock()
        self.deal_locks = DealLocks()
        self._recorded_listeners: list[Callable[[], None]] = []
        # Group commit (storage/group_commit.py): concurrent commands saved in one transaction.
        wait_ms = float(self.env.get(GROUP_COMMIT_MS, DEFAULT_GROUP_COMMIT_MS))
        self.group_commit = wait_ms > 0 and hasattr(self.recorder, "enable_group_commit")
        if self.group_commit:
            self.recorder.enable_group_commit(  # type: ignore[attr-defined]
                max_batch=int(self.env.get(GROUP_COMMIT_MAX, DEFAULT_GROUP_COMMIT_MAX)), wait_seconds=wait_ms / 1000
            )

    def close(self) -> None:
        group = getattr(self.recorder, "group", None)
        if group is not None:
            group.close()
        super().close()

    def on_recorded(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the writing thread) each time events are stored: wakes the relay."""
        self._recorded_listeners.append(listener)

    def remove_recorded_listener(self, listener: Callable[[], None]) -> None:
        self._recorded_listeners.remove(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for listener in list(self._recorded_listeners):
            listener()

    def construct_repository(self) -> Repository[UUID]:
        # The library's own repository, with the same settings from the same environment.
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return DealRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def construct_snapshot_store(self) -> EventStore[UUID]:
        # Snapshots are chained when written and used only while they match (storage.chain).
        return self.factory.event_store(
            mapper=self.mapper,
            recorder=self.recorder.snapshot_recorder(create_table=self.factory.env_create_table()),  # type: ignore[attr-defined]
        )

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcodings.register(transcoder)

    # -- commands ------------------------------------------------------------------------

    def handle(self, name: str, deal_id: UUID | None, body: c.Command | None, ctx: c.CommandContext, /, **ids: str) -> Outcome:
        """Run one command of the table (command_table.COMMANDS): the one entry HTTP and NATS share.

        `deal_id` is None only for open_deal; `ids` are the other identifiers the command's path
        names (e.g. promise_id; positional-only parameters, since a path id may be called `name`).
        """
        command = BY_NAME[name]
        if set(ids) != set(command.ids) or (deal_id is None) != command.opens or (body is None) != (command.body is None):
            raise TypeError(f"{name} takes deal_id, {', '.join(command.ids) or 'no other ids'} and {'a body' if command.body else 'no body'}")
        return self._execute(command, deal_id, body, ctx, ids)

    def _record_refused_signing(self, deal: Deal, refused: SigningRefused, ctx: c.CommandContext) -> None:
        """The deal is unchanged; the attempt goes to the deal's log of refused signings (for alerts and audit)."""
        # Another process may append to (or create) the same log at the same moment: re-run on its new version.
        for attempt in _conflict_retries(self.conflict_retries, IntegrityError, log.bind(command="sign_contract", deal_id=str(deal.id), writing="signing_attempts")):
            with attempt:
                try:
                    attempts: SigningAttempts = self.repository.get(SigningAttempts.create_id(str(deal.id)))
                except AggregateNotFoundError:
                    attempts = SigningAttempts(deal_id=str(deal.id))
                attempts.refused(
                    deal_version=deal.version, blockers=refused.blockers, blockers_total=refused.blockers_total, by=_by(ctx)
                )
                self.save(attempts)

    # -- queries ---------------------------------------------------------------------------

    def get_deal(self, deal_id: UUID, *, version: int | None = None, as_of: datetime | None = None) -> Deal:
        """The deal now, or as it was at a version or a moment (replayed from its events)."""
        if as_of is not None:
            version = self._version_at(deal_id, as_of)
        if version is not None and version < 1:
            raise InvalidCommand("as_of_version", "must be 1 or more")
        try:
            deal: Deal = self.repository.get(deal_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(f"no deal {deal_id}") from None
        except OriginatorVersionError:
            log.error("store damaged", deal_id=str(deal_id), reason="an event is missing; run dealflow verify")
            raise StoreDamaged(f"deal {deal_id} cannot be replayed: one of its events is missing (run dealflow verify)") from None
        if version is not None and deal.version < version:
            raise InvalidCommand("as_of_version", f"must be at most {deal.version}, the deal's latest version")
        return deal

    def standing_concessions(self, deal_id: UUID, *, version: int | None = None) -> list[Concession]:
        """The deal's concessions that stand (at `version`), from its history: the deal itself keeps only their counts."""
        return standing_concessions(self.events.get(deal_id, lte=version))

    def history(self, deal_id: UUID) -> list[CanMutateAggregate[UUID]]:
        events = list(self.events.get(deal_id))
        if not events:
            raise NotFound(f"no deal {deal_id}")
        return events

    def refused_signings(self, deal_id: UUID) -> list[SigningAttempts.SigningRefused]:
        """The deal's log of refused signings, oldest first (empty when signing was never refused)."""
        events = self.events.get(SigningAttempts.create_id(str(deal_id)))
        return [e for e in events if isinstance(e, SigningAttempts.SigningRefused)]

    def list_deals(
        self, *, stage: str | None, owner: str | None, limit: int, cursor: str | None, overdue: bool | None = None
    ) -> Page:
        after = decode_cursor(cursor) if cursor else None
        rows = self.recorder.select_summaries(stage=stage, owner=owner, after=after, limit=limit + 1, overdue=overdue)
        more = len(rows) > limit
        items = rows[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1]) if more else None)

    def rebuild_read_model(self) -> int:
        """Replace the read model with one rebuilt from the event log; returns the number of deals.

        Run it while no commands are being accepted: a command saved during the rebuild
        would have its row overwritten by the older state read here.
        """
        deal_ids = self.opened_deal_ids()
        self.recorder.replace_summaries([summary_of(self.repository.get(deal_id)) for deal_id in deal_ids])
        return len(deal_ids)

    def opened_deal_ids(self) -> list[UUID]:
        """Every deal ever opened, from the event log (not the read model)."""
        deal_ids: list[UUID] = []
        start, page = None, 1000
        while True:
            notifications = self.recorder.select_notifications(
                start=start, limit=page, topics=[Deal.DealOpened.TOPIC], inclusive_of_start=False
            )
            deal_ids += [UUID(str(n.originator_id)) for n in notifications]
            if len(notifications) < page:
                return deal_ids
            start = notifications[-1].id

    @staticmethod
    def project_from(events: list[CanMutateAggregate[UUID]]) -> Deal:
        """The deal replayed from these events alone (no snapshot): what an auditor's replay sees."""
        deal = project_aggregate(None, events)
        if deal is None:
            raise NotFound("no events to replay")
        return deal

    def today(self) -> date:
        return self.clock.now().astimezone(UTC).date()

    # -- time ------------------------------------------------------------------------------

    def keep_time(self, deal_id: UUID) -> int:
        """Record on the deal what the clock says has passed (Deal.keep_time), and write its schedule
        anew; returns how many facts were recorded. Safe from any process at any moment: the deal
        remembers what it recorded, and the store's version check makes a second writer run again on
        the first one's facts, so each deadline is recorded once."""
        bound = log.bind(command="keep_time", deal_id=str(deal_id), actor=SERVICE)
        with self._under_way(), self.deal_locks.hold(deal_id):
            for attempt in _conflict_retries(self.conflict_retries, ConcurrentWrite, bound):
                with attempt:
                    deal = self.get_deal(deal_id)
                    now = self.clock.now()
                    with recorded_at(now):
                        recorded = deal.keep_time(now=now, policy=self.policy, correlation_id=f"schedule-{uuid4()}")
                    facts = [event_type(e) for e in deal.pending_events]
                    # Written even when nothing is due any more: the row's schedule is then brought up to date.
                    self._save_alone(deal)
        if recorded:
            bound.info("command", outcome="accepted", recorded=facts, version=deal.version)
        return recorded

    def due_deals(self, limit: int) -> list[UUID]:
        """Deals with something due by the clock's now, by the schedule the read model keeps."""
        offsets = deadlines.offsets(self.policy.deadlines)
        return [UUID(deal_id) for deal_id in self.recorder.select_due(offsets, self.clock.now(), limit)]

    def next_due(self) -> datetime | None:
        """The earliest moment anything on any deal falls due under this policy (None: nothing is scheduled)."""
        return self.recorder.select_next_due(deadlines.offsets(self.policy.deadlines))  # type: ignore[no-any-return]

    def unscheduled_deals(self, limit: int) -> list[UUID]:
        """Deals whose read-model row was written before deadlines existed: they have no schedule yet."""
        return [UUID(deal_id) for deal_id in self.recorder.select_unscheduled(limit)]

    # -- the command pipeline ------------------------------------------------------------

    def _execute(
        self, command: DealCommand, deal_id: UUID | None, body: c.Command | None, ctx: c.CommandContext, ids: Mapping[str, str]
    ) -> Outcome:
        bound = log.bind(
            command=command.name,
            deal_id=str(deal_id) if deal_id else None,
            actor=ctx.actor,
            on_behalf_of=ctx.on_behalf_of,
            correlation_id=ctx.correlation_id,
            idempotency_key=ctx.idempotency_key,
        )
        fingerprint = _fingerprint(command.name, deal_id, ids.get(command.target) if command.target else None, body)
        try:
            # The doors ask too, before they read a body; asked here, no door can skip it.
            role = authorize(command.roles, ctx.roles, command.name)
            # Opening a deal needs no lock: nobody else can be writing a deal that does not exist yet.
            with self._under_way(), self.deal_locks.hold(deal_id) if deal_id is not None else nullcontext():
                outcome = self._replayed(ctx, fingerprint)
                if outcome is None:
                    for attempt in self._attempts(ctx, bound):
                        with attempt:
                            outcome = self._run_once(command, deal_id, body, ctx, ids, role, fingerprint)
        except DealflowError as refusal:
            bound.info("command", outcome="refused", code=refusal.code, reason=refusal.message)
            raise
        assert outcome is not None
        bound.info(
            "command",
            outcome="replayed" if outcome.replayed else "accepted",
            deal_id=str(outcome.deal.id),
            version=outcome.deal.version,
        )
        return outcome

    def _under_way(self) -> Any:
        """While a command runs, a batch being gathered may wait for its save (group commit)."""
        group = getattr(self.recorder, "group", None)
        return group.command() if group is not None else nullcontext()

    def _attempts(self, ctx: c.CommandContext, logger: Any) -> Retrying:
        # A command that stated its expected version must not be re-applied to a newer one.
        return _conflict_retries(1 if ctx.expected_version is not None else self.conflict_retries, ConcurrentWrite, logger)

    def _run_once(
        self,
        command: DealCommand,
        deal_id: UUID | None,
        body: c.Command | None,
        ctx: c.CommandContext,
        ids: Mapping[str, str],
        role: str,
        fingerprint: str,
    ) -> Outcome:
        now = self.clock.now()
        call = Call(body=body, ids=ids, by=_by(ctx), role=role, policy=self.policy, today=now.astimezone(UTC).date())
        if deal_id is None:
            with recorded_at(now):
                deal, created_id = command.run(None, call), None
        else:
            deal = self.get_deal(deal_id)
            if ctx.expected_version is not None and deal.version != ctx.expected_version:
                raise VersionMismatch(
                    f"deal {deal_id} is at version {deal.version}, not the expected {ctx.expected_version}"
                )
            self._keep_time_first(deal, now, ctx)
            try:
                with recorded_at(now):
                    created_id = command.run(deal, call)
            except SigningRefused as refused:
                # Every refusal is recorded, including "already signed" or "walked away" (the
                # stage blocker): each is an attempt someone made. Recorded here, under the
                # deal's lock, with the version it was judged at; a refusal is never re-run,
                # so it is recorded exactly once.
                self._record_refused_signing(deal, refused, ctx)
                raise
        receipt = (
            CommandReceipt(ctx.idempotency_key, fingerprint, str(deal.id), deal.version, created_id)
            if ctx.idempotency_key
            else None
        )
        try:
            self.save(deal, summaries=[summary_of(deal)], receipt=receipt)
        except IntegrityError:
            # Either the same idempotency key won a race, or another writer took this version.
            replayed = self._replayed(ctx, fingerprint)
            if replayed is not None:
                return replayed
            if ctx.expected_version is not None:
                raise VersionMismatch(
                    f"deal {deal.id} changed while the command ran; it is no longer at version {ctx.expected_version}"
                ) from None
            raise ConcurrentWrite(f"deal {deal.id} was changed by another command at the same time") from None
        return Outcome(deal, created_id)

    def _keep_time_first(self, deal: Deal, now: datetime, ctx: c.CommandContext) -> None:
        """What time has made true comes before the command's own facts: a deadline that passed unrecorded
        (the scheduler was down, or is still catching up) is recorded now, saved on its own, so the meeting
        held late is the making good of a missed deadline, not a deadline met, whatever the command does."""
        with recorded_at(now):
            recorded = deal.keep_time(now=now, policy=self.policy, correlation_id=ctx.correlation_id)
        if recorded:
            self._save_alone(deal)

    def _save_alone(self, deal: Deal) -> None:
        """The deal's facts of time and its row, in a transaction of their own; a writer that took the version
        first makes it a ConcurrentWrite, which the caller's attempts re-run on the winner's facts."""
        try:
            self.save(deal, summaries=[summary_of(deal)])
        except IntegrityError:
            raise ConcurrentWrite(f"deal {deal.id} was changed by another command at the same time") from None

    def _replayed(self, ctx: c.CommandContext, fingerprint: str) -> Outcome | None:
        if not ctx.idempotency_key:
            return None
        receipt = self.recorder.select_receipt(ctx.idempotency_key)
        if receipt is None:
            return None
        if receipt.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                f"idempotency key {ctx.idempotency_key!r} was already used for a different command or payload"
            )
        deal = self.get_deal(UUID(receipt.deal_id), version=receipt.version)
        return Outcome(deal, receipt.created_id, replayed=True)

    def _version_at(self, deal_id: UUID, moment: datetime) -> int:
        if moment.tzinfo is None:
            raise InvalidCommand("as_of", "must include a time zone, e.g. 2026-01-31T12:00:00Z")
        version = None
        for domain_event in self.history(deal_id):
            if domain_event.timestamp > moment:
                break
            version = domain_event.originator_version
        if version is None:
            raise NotFound(f"deal {deal_id} was not yet opened at {moment.isoformat()}")
        return version


def _by(ctx: c.CommandContext) -> Attribution:
    return Attribution(actor=ctx.actor, correlation_id=ctx.correlation_id, on_behalf_of=ctx.on_behalf_of)


def _fingerprint(name: str, deal_id: UUID | None, target: str | None, payload: c.Command | None) -> str:
    document: dict[str, Any] = {
        "command": name,
        "deal_id": str(deal_id) if deal_id else None,
        "target": target,
        "payload": payload.model_dump(mode="json") if payload else None,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
