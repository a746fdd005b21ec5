"""The auditors' commands: history, show (as of a moment), export, verify, diagram (typer and rich)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dealflow.deal_lifecycle.adapters.checkpoints import CHECKPOINTS_STREAM, CheckpointsUnreachable, compare, key_file, load_key, read_checkpoints
from dealflow.deal_lifecycle.application.audit import Audit, StoreVerdict
from dealflow.deal_lifecycle.application.integrity import verify_export
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import deal_view, event_view, refused_signing_view
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.bootstrap import NoStore, StoreUnreachable, open_to_read
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.errors import DealflowError
from dealflow.deal_lifecycle.entrypoints.cli.diagram import mermaid, svg
from dealflow.deal_lifecycle.entrypoints.cli.local_nats import embedded_nats_url, nats_credentials
from dealflow.nats_connection import shown
from dealflow.terminal import printable, rich_text, value_text


def _deals() -> DealService:
    """The store, opened to read: a missing store is an error naming it, never a new empty one."""
    settings = Settings.from_env()
    try:
        return open_to_read(settings)
    except NoStore:
        typer.echo(f"dealflow: no store: {printable(settings.describe_store())} (set DEALFLOW_SQLITE_PATH or DEALFLOW_DATABASE_URL)", err=True)
    except StoreUnreachable as error:
        typer.echo(f"dealflow: cannot reach the store, {printable(settings.describe_store())}: {printable(str(error))}", err=True)
    raise typer.Exit(code=2)


def _deal_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise typer.BadParameter(f"not a deal id: {value!r}") from None


def history(deal_id: str = typer.Argument(..., help="The deal's id.")) -> None:
    """Every fact of a deal, oldest first: version, time, actor, event and its key data."""
    uuid = _deal_id(deal_id)
    deals = _deals()
    try:
        table = Table(title=f"Deal {uuid}", show_lines=False)
        for column in ("version", "time (UTC)", "actor", "event", "data"):
            table.add_column(column, overflow="fold")
        for domain_event in deals.history(uuid):
            view = event_view(domain_event, limits=True)
            data = ", ".join(f"{k}={value_text(v)}" for k, v in view["data"].items() if v not in (None, "", [], {}))
            # Callers wrote the actor and the data: cells are plain Text, never markup.
            actor = view["actor"] + (f" (for {view['on_behalf_of']})" if view["on_behalf_of"] else "")
            table.add_row(*(rich_text(cell) for cell in (view["version"], view["timestamp"][:23], actor, view["type"], data)))
        console = Console(width=200)
        console.print(table)
        refused = deals.refused_signings(uuid)
        if refused:
            # Its own log with its own numbering: attempt 1, 2... each judged at a deal version above.
            attempts = Table(title="Refused signings (a log of its own: attempts, not deal versions)", show_lines=False)
            for column in ("attempt", "at deal version", "time (UTC)", "actor", "blockers"):
                attempts.add_column(column, overflow="fold")
            for entry in map(refused_signing_view, refused):
                blockers = ", ".join(b["code"] for b in entry["blockers"])
                if entry["blockers_total"] > len(entry["blockers"]):
                    blockers += f" (+{entry['blockers_total'] - len(entry['blockers'])} more)"
                cells = (entry["attempt"], entry["deal_version"], entry["timestamp"][:23], entry["actor"], blockers)
                attempts.add_row(*(rich_text(cell) for cell in cells))
            console.print(attempts)
        verdict = Audit(deals).verify(uuid)
        if verdict.finding is not None:
            # The listing is what the store holds now; an auditor must not read it as the record.
            console.print(rich_text(f"chain broken at version {verdict.finding.version}: {verdict.finding.problem}: {verdict.finding.detail} (run dealflow verify {uuid})"))
    except DealflowError as e:
        _fail(e)
    finally:
        deals.close()


def show(
    deal_id: str = typer.Argument(..., help="The deal's id."),
    as_of: datetime | None = typer.Option(None, "--as-of", help="ISO 8601 time with a zone: the deal as it was then."),
    version: int | None = typer.Option(None, "--version", help="The deal as it was at this version."),
) -> None:
    """The deal at a moment (or now), with the signing blockers that applied then, as JSON."""
    if as_of is not None and version is not None:
        raise typer.BadParameter("give --as-of or --version, not both")
    deals = _deals()
    try:
        deal = deals.get_deal(_deal_id(deal_id), version=version, as_of=as_of)
        concessions = deals.standing_concessions(deal.id, version=deal.version)
        typer.echo(json.dumps(deal_view(deal, concessions=concessions, limits=True, policy=deals.policy), indent=2))
    except DealflowError as e:
        _fail(e)
    finally:
        deals.close()


def export(
    deal_id: str = typer.Argument(..., help="The deal's id."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one event per line, with its stored bytes and hashes."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
) -> None:
    """Every event of a deal with its hash: enough for an independent check (`dealflow verify --export`)."""
    if fmt != "jsonl":
        raise typer.BadParameter("the only format is jsonl")
    deals = _deals()
    try:
        lines = [json.dumps(entry) for entry in Audit(deals).export(_deal_id(deal_id))]
        if not lines:
            _fail(DealflowError(f"no deal {deal_id}"))
        text = "\n".join(lines) + "\n"
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text)
            typer.echo(f"dealflow: wrote {_count(len(lines), 'event')} of deal {deal_id} to {output}", err=True)
    finally:
        deals.close()


def verify(
    deal_id: str | None = typer.Argument(None, help="The deal to check; or --all."),
    all_deals: bool = typer.Option(False, "--all", help="Check every stream in the store."),
    exported: Path | None = typer.Option(None, "--export", help="Check a file written by `dealflow export`, alone."),
    read_model: bool = typer.Option(False, "--read-model", help="Check the deals listing against the event log."),
    no_checkpoints: bool = typer.Option(False, "--no-checkpoints", help="Do not compare with the checkpoints on NATS (exit 0 when intact)."),
) -> None:
    """Recompute the hash chains (each deal's and the store-wide one) and compare with the checkpoints on NATS.

    Exit 0: intact (and compared with checkpoints, unless --no-checkpoints); 1: a problem found;
    2: no such deal; 3: intact as far as the store shows, but not compared with checkpoints.
    """
    if exported is not None:
        entries = [json.loads(line) for line in exported.read_text().splitlines() if line.strip()]
        # Each stream's lines are its own chain: the deal's, and its log of refused signings.
        streams: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            streams.setdefault(entry["originator_id"], []).append(entry)
        problems = []
        for originator_id, lines in streams.items():
            finding = verify_export(lines)
            if finding is not None:
                problems.append((f"{exported} ({originator_id})", f" at version {finding.version}", finding.problem, finding.detail))
        _report(problems, f"{_count(len(streams), 'stream')}, {_count(len(entries), 'exported event')}", "the exported events")
        return
    settings = Settings.from_env()
    deals = _deals()
    try:
        audit = Audit(deals)
        problems: list[tuple[str, str, str, str]] = []
        checked = "the read model" if read_model else ""
        if read_model:
            problems += [(deal, "", "read model", detail) for deal, detail in audit.read_model_problems()]
        if all_deals:
            with Progress(console=Console(stderr=True)) as progress:
                task = progress.add_task("verifying", total=audit.streams())
                sweep = audit.sweep(lambda done, total: progress.update(task, completed=done, total=total))
            problems += [(v.originator_id, f" at version {v.finding.version}", v.finding.problem, v.finding.detail) for v in sweep.broken if v.finding]
            streams = _count(sweep.streams, "stream") + " (deals and their logs of refused signings)"
            checked = ", ".join(filter(None, [checked, streams, _count(sweep.events, "event")]))
        elif deal_id is not None:
            uuid = _deal_id(deal_id)
            verdict = audit.verify(uuid)
            if verdict.events == 0 and verdict.finding is None:
                _fail(DealflowError(f"no deal {deal_id}"))
            # The deal's own stream and, when signing was ever refused, its log of refused signings (as export has them).
            verdicts = [verdict, audit.verify(SigningAttempts.create_id(str(uuid)))]
            verdicts = [v for v in verdicts if v.events or v.finding]
            streams = "1 stream (the deal's)" if len(verdicts) == 1 else f"{len(verdicts)} streams (the deal's and its refused signings)"
            checked = ", ".join(filter(None, [checked, streams, _count(sum(v.events for v in verdicts), "event")]))
            problems += [(v.originator_id, f" at version {v.finding.version}", v.finding.problem, v.finding.detail) for v in verdicts if v.finding]
        elif not read_model:
            raise typer.BadParameter("name a deal, or give --all, --read-model or --export")
        compared = True
        if all_deals or deal_id is not None:
            store = audit.verify_store()
            problems += [("store-wide chain", f" at entry {f.seq}" if f.seq else "", f.problem, f.detail) for f in store.findings]
            typer.echo(_coverage(store))
            if no_checkpoints:
                typer.echo("checkpoints: not compared (--no-checkpoints)")
            else:
                compared, line, found = _compare_with_checkpoints(settings, store)
                typer.echo(line)
                problems += found
        _report(problems, checked)
        if not compared:
            raise typer.Exit(code=3)
    finally:
        deals.close()


def _coverage(store: StoreVerdict) -> str:
    if store.head is None:
        return "store-wide chain: none"
    text = f"store-wide chain: {store.entries} entries (events, receipts, snapshots) of store {store.head.store_id}"
    if store.head.backfilled_entries:
        text += f"; the first {store.head.backfilled_entries} were chained on {store.head.backfilled_at} as found then (written before the chain existed)"
    return text


def _compare_with_checkpoints(settings: Settings, store: StoreVerdict) -> tuple[bool, str, list[tuple[str, str, str, str]]]:
    """Whether the store was compared, the line that says how far, and what the checkpoints contradict."""
    servers = settings.nats_servers or embedded_nats_url(settings)
    if store.head is None:
        return False, "checkpoints: not compared: the store has no store-wide chain", []
    if not servers:
        return False, (
            "checkpoints: not compared: no NATS to read them from (`dealflow up` is not running here: no var/nats.url; "
            "set NATS_URL, or run with --no-checkpoints)"
        ), []
    try:
        checkpoints = asyncio.run(read_checkpoints(servers, store.head.store_id, credentials=nats_credentials(settings, "auditor")))
    except CheckpointsUnreachable as e:
        return False, f"checkpoints: not compared: {printable(str(e))} (run with --no-checkpoints to verify without them)", []
    if not checkpoints:
        return False, f"checkpoints: not compared: none published for store {store.head.store_id} on {', '.join(shown(servers))}", []
    key_path = key_file(settings)
    key = load_key(key_path)
    comparison = compare(checkpoints, store.hashes, key)
    found = [("checkpoints", f" at entry {f.seq}", f.problem, f.detail) for f in comparison.findings]
    signatures = f"signatures checked with {key_path}" if key is not None else f"signatures not checked: no key at {key_path}"
    if comparison.latest is None:
        return True, f"checkpoints: compared with {_count(comparison.checkpoints, 'checkpoint')} on {CHECKPOINTS_STREAM} ({signatures}); none matches", found
    latest = comparison.latest
    line = (
        f"checkpoints: compared with {_count(comparison.checkpoints, 'checkpoint')} on {CHECKPOINTS_STREAM} ({signatures}); "
        f"the latest that matches, of {latest.at}, anchors entries 1 to {latest.seq} of {store.entries}"
    )
    if latest.seq < store.entries:
        line += f" (entries {latest.seq + 1} to {store.entries} are not anchored yet)"
    return True, line, found


def diagram(
    output: Path = typer.Option(Path("lifecycle.svg"), "--output", "-o", help="Where to write the SVG image."),
) -> None:
    """The lifecycle, from the state machine itself: an SVG image, and Mermaid on standard output."""
    output.write_text(svg())
    typer.echo(mermaid(), nl=False)
    typer.echo(f"dealflow: wrote {output}", err=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _report(problems: list[tuple[str, str, str, str]], checked: str, source: str = "the stored events") -> None:
    if not problems:
        # What was checked comes first: "0 streams, 0 events, intact" is not mistaken for a verified record.
        typer.echo(f"{checked}, intact: every hash chain recomputes from {source}")
        return
    for stream, where, problem, detail in problems:
        typer.echo(printable(f"{stream}: {problem}{where}: {detail}"))
    raise typer.Exit(code=1)


def _fail(error: DealflowError) -> None:
    typer.echo(f"dealflow: {printable(error.message)}", err=True)
    raise typer.Exit(code=2)
