// A deal (/ui/deals/{id}): stage, blockers, conditions, health, expectations, deadlines, the timeline
// with its refused signings, the chain's verification, "as of" any earlier version or moment, and
// (for emitter and admin tokens) the lifecycle commands.
"use strict";

(function () {
  const D = window.Dealflow;
  const { h, STAGE_LABELS } = D;

  // What clears each blocker (domain/blockers.py names them; the API's message says which item).
  const CLEARS = {
    stage: "Hold the transition meeting first (after the letter of intent); a signed or walked-away deal has nothing left to sign.",
    missing_client_expectation: "Record a client expectation (specific and measurable) and have the firm agree it.",
    missing_provider_expectation: "Record a provider expectation and have the client agree it.",
    expectation_not_agreed: "The other side agrees it, or it is withdrawn and recorded again in refined terms.",
    promise_not_accepted: "Operations accepts it in the meeting, or Sales withdraws or renegotiates it.",
    attendance_incomplete: "Hold another session of the transition meeting with the missing roles present.",
    open_walk_away_condition: "Resolve it (revise the term within the limits, renegotiate the promise, ...) or have an approver waive it with a reason.",
  };
  const OPEN_STAGES = ["prospect", "letter_of_intent", "transition_meeting"];

  D.pages.deal = function (view, dealId) {
    const base = "/deals/" + encodeURIComponent(dealId);
    let asOf = null; // null: now; {version} or {moment}
    let latest = null; // the deal now (for the write controls)
    let sequence = 0;

    // -- the skeleton: every section is there from the start, filled by render() ---------------

    function section(testid, title, ...extra) {
      const id = "section-" + testid;
      return h("section", { class: "panel", "data-testid": testid, "aria-labelledby": id }, h("h2", { id }, title), ...extra);
    }

    const titleHeading = h("h1", { class: "page-title", id: "deal-title" }, "Deal");
    const stage = h("span", { class: "stage", "data-testid": "stage" }, "…");
    const facts = h("p", { class: "deal-facts" });
    const banner = h("div", { class: "as-of-slot" });
    const status = h("p", { class: "status", role: "status" }, "Loading the deal…");

    const versionInput = h("input", { id: "as-of-version", type: "number", min: "1", step: "1", inputmode: "numeric" });
    const momentInput = h("input", { id: "as-of-moment", type: "datetime-local", step: "1" });
    const asOfForm = h(
      "form",
      { class: "as-of", "aria-label": "Show the deal as of", id: "as-of-form" },
      h("div", { class: "field" }, h("label", { for: "as-of-version" }, "As of version"), versionInput),
      h("div", { class: "field" }, h("label", { for: "as-of-moment" }, "or as of a moment (your local time)"), momentInput),
      h("div", { class: "buttons" }, h("button", { type: "submit", id: "as-of-apply" }, "Show then"), h("button", { type: "button", id: "as-of-now", class: "button-quiet" }, "Now"))
    );

    const blockers = h("ul", { "data-testid": "blockers", class: "blockers" });
    const conditions = section("conditions", "Walk-away conditions");
    const health = section("health", "Concession balance and health");
    const expectations = section("expectations", "Expectations");
    const scorecard = section("scorecard", "Scorecard");
    const deadlines = section("deadlines", "Deadlines");
    const timeline = h("ol", { "data-testid": "timeline", class: "timeline" });
    const refused = h("section", { class: "panel lane", "data-testid": "refused-lane", "aria-labelledby": "section-refused" }, h("h2", { id: "section-refused" }, "Refused signings"));
    const verify = h("section", { class: "panel", "data-testid": "verify", "aria-labelledby": "section-verify" }, h("h2", { id: "section-verify" }, "Chain verification"), h("p", {}, "…"));
    const writeSlot = h("div", { class: "write-slot" });

    D.append(
      view,
      h("p", { class: "crumbs" }, h("a", { href: "/ui" }, "← Pipeline"), " · ", h("a", { href: "/ui/alerts?deal=" + encodeURIComponent(dealId) }, "Alerts of this deal")),
      h("div", { class: "deal-head" }, titleHeading, h("p", { class: "deal-stage" }, "Stage: ", stage), facts),
      status,
      asOfForm,
      banner,
      h(
        "div",
        { class: "deal-grid" },
        h(
          "div",
          { class: "deal-main" },
          section("blockers-panel", "What blocks signing", blockers),
          conditions,
          expectations,
          h(
            "section",
            { class: "panel", "aria-labelledby": "section-timeline", "data-testid": "history" },
            h("h2", { id: "section-timeline" }, "Timeline"),
            h("div", { class: "lanes" }, h("div", { class: "lane lane-facts" }, h("h3", {}, "Facts"), timeline), refused)
          )
        ),
        h("div", { class: "deal-side" }, writeSlot, health, scorecard, deadlines, verify)
      )
    );

    asOfForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const version = versionInput.value.trim();
      const moment = momentInput.value;
      if (version) {
        asOf = { version: Number.parseInt(version, 10) };
        momentInput.value = "";
      } else if (moment) {
        const parsed = new Date(moment);
        if (Number.isNaN(parsed.getTime())) {
          status.textContent = "That moment could not be read.";
          return;
        }
        asOf = { moment: parsed.toISOString() };
      } else {
        asOf = null;
      }
      load();
    });
    asOfForm.querySelector("#as-of-now").addEventListener("click", () => {
      asOf = null;
      versionInput.value = "";
      momentInput.value = "";
      load();
    });

    // -- loading ---------------------------------------------------------------------------

    function dealPath() {
      if (!asOf) return base;
      if (asOf.version) return base + "?as_of_version=" + encodeURIComponent(asOf.version);
      return base + "?as_of=" + encodeURIComponent(asOf.moment);
    }

    async function load() {
      const mine = ++sequence;
      const [deal, now, history, healthView, verdict] = await Promise.allSettled([
        D.api(dealPath()),
        asOf ? D.api(base) : Promise.resolve(null),
        D.api(base + "/events"),
        D.api(base + "/health"),
        D.api(base + "/verify"),
      ]);
      if (mine !== sequence) return; // a later load is under way
      if (deal.status === "rejected") {
        const error = deal.reason;
        if (asOf && error instanceof D.ApiError && error.status !== 401) {
          status.textContent = `The deal as of then could not be shown: ${describeError(error)}`;
          return;
        }
        status.textContent = error instanceof D.ApiError && error.status === 404 ? "No such deal." : `The deal could not be read: ${error.message}`;
        return;
      }
      const shown = deal.value.body;
      latest = asOf ? (now.status === "fulfilled" && now.value ? now.value.body : latest) : shown;
      status.textContent = "";
      renderDeal(shown);
      renderBanner(shown);
      if (history.status === "fulfilled") renderHistory(history.value.body, shown);
      if (healthView.status === "fulfilled") renderHealth(healthView.value.body);
      renderVerify(verdict);
      renderWriteControls();
    }

    function describeError(error) {
      const body = error.body || {};
      const parts = [`${body.code || error.status}: ${body.message || error.message}`];
      for (const field of body.errors || []) parts.push(`${field.field}: ${field.rule}`);
      return parts.join("; ");
    }

    // -- rendering -------------------------------------------------------------------------

    function renderDeal(deal) {
      document.title = `${deal.client_name}: ${deal.title} · dealflow`;
      D.replaceChildren(titleHeading, deal.client_name, ": ", deal.title);
      stage.textContent = STAGE_LABELS[deal.stage] || deal.stage;
      stage.dataset.stage = deal.stage;
      D.replaceChildren(
        facts,
        "owner ",
        h("span", { "data-testid": "owner" }, deal.owner),
        " · version ",
        h("span", { "data-testid": "version" }, String(deal.version)),
        " · opened ",
        D.when(deal.opened_at),
        deal.stage_entered_at ? [" · in this stage since ", D.when(deal.stage_entered_at)] : null,
        deal.overdue ? [" · ", h("span", { class: "badge badge-overdue", "data-testid": "overdue" }, "overdue")] : null,
        deal.walk_away_reason ? [" · walked away: ", h("span", { "data-testid": "walk-away-reason" }, deal.walk_away_reason)] : null
      );

      // A signed or walked-away deal has nothing left to sign: the API's one "stage" blocker says so, as a note.
      const closed = !OPEN_STAGES.includes(deal.stage);
      const shownBlockers = closed ? [] : deal.blockers || [];
      D.replaceChildren(
        blockers,
        shownBlockers.map((blocker) =>
          h(
            "li",
            { class: "blocker", "data-code": blocker.code },
            h("span", { class: "blocker-what" }, blocker.message),
            h("span", { class: "blocker-clears" }, "Clears when: " + (CLEARS[blocker.code] || "the cause named above is cleared."))
          )
        )
      );
      if (closed) blockers.append(h("li", { class: "blocker-none" }, (deal.blockers || []).map((b) => b.message).join("; ") || "The deal is closed."));
      else if (!shownBlockers.length) blockers.append(h("li", { class: "blocker-none" }, "Nothing blocks signing."));

      renderConditions(deal);
      renderExpectations(deal);
      renderScorecard(deal);
      renderDeadlines(deal);
    }

    function renderBanner(deal) {
      D.clear(banner);
      if (!asOf) return;
      const then = asOf.version ? `version ${asOf.version}` : `${D.formatWhen(asOf.moment)} (${asOf.moment})`;
      banner.append(
        h(
          "div",
          { class: "as-of-banner", "data-testid": "as-of-banner", role: "status" },
          h("strong", {}, `The deal as it was at ${then}`),
          `: stage ${STAGE_LABELS[deal.stage] || deal.stage}, version ${deal.version}. Health and verification are as of now. `,
          h("button", { type: "button", class: "button-quiet", onclick: () => asOfForm.querySelector("#as-of-now").click() }, "Back to now")
        )
      );
    }

    function evidence(value) {
      if (!value || typeof value !== "object") return h("span", {}, D.valueText(value));
      return h("dl", { class: "evidence" }, Object.entries(value).map(([k, v]) => [h("dt", {}, D.words(k)), h("dd", {}, D.valueText(v))]));
    }

    function condition(item) {
      return h(
        "li",
        { class: "condition", "data-status": item.status, "data-condition-id": item.id },
        h("p", { class: "condition-head" }, h("strong", {}, D.words(item.kind)), " on ", h("code", {}, item.subject), " · ", h("span", { class: "condition-status" }, item.status)),
        evidence(item.evidence),
        h("p", { class: "condition-policy" }, "judged by policy ", h("code", { title: item.policy_version }, D.truncate(item.policy_version || "", 23))),
        item.closed_because ? h("p", { class: "condition-closed" }, "closed because: " + item.closed_because) : null
      );
    }

    function renderConditions(deal) {
      const open = (deal.conditions && deal.conditions.open) || [];
      const closed = (deal.conditions && deal.conditions.closed) || [];
      D.replaceChildren(
        conditions,
        h("h2", { id: "section-conditions" }, "Walk-away conditions"),
        h("h3", {}, `Open (${open.length})`),
        open.length ? h("ul", { class: "conditions", "data-testid": "conditions-open" }, open.map(condition)) : h("p", {}, "None open."),
        h("h3", {}, `Resolved or waived (${closed.length})`),
        closed.length ? h("ul", { class: "conditions", "data-testid": "conditions-closed" }, closed.map(condition)) : h("p", {}, "None.")
      );
    }

    function expectation(item) {
      const outcome = item.outcome ? `${item.outcome}${item.evidence ? ": " + item.evidence : ""}` : item.overdue ? "overdue, not marked" : item.due_soon ? "due soon" : null;
      return h(
        "li",
        { class: "expectation", "data-side": item.side, "data-decision": item.decision, "data-expectation-id": item.id },
        h("p", { class: "expectation-statement" }, h("strong", {}, item.statement)),
        h("p", { class: "expectation-measure" }, `metric: ${item.metric} · target: ${item.target} · due ${item.due} · priority ${item.priority}`),
        h("p", { class: "expectation-decision" }, "decision: ", h("span", { "data-testid": "decision" }, item.decision), item.reason ? ` (${item.reason})` : ""),
        outcome ? h("p", { class: "expectation-outcome", "data-testid": "outcome" }, "outcome: " + outcome) : null
      );
    }

    function renderExpectations(deal) {
      const all = deal.expectations || [];
      const side = (name, words) => {
        const mine = all.filter((e) => e.side === name);
        return h(
          "div",
          { class: "expectation-side", "data-side": name },
          h("h3", {}, `${words} (${mine.length})`),
          mine.length ? h("ul", { class: "expectations" }, mine.map(expectation)) : h("p", {}, "None recorded.")
        );
      };
      D.replaceChildren(
        expectations,
        h("h2", { id: "section-expectations" }, "Expectations"),
        h("div", { class: "two-sides" }, side("client", "What the client expects of the firm"), side("provider", "What the firm needs from the client"))
      );
    }

    function renderScorecard(deal) {
      const card = deal.scorecard || {};
      const sides = Object.keys(card);
      const columns = ["met", "missed", "overdue", "pending"];
      D.replaceChildren(
        scorecard,
        h("h2", { id: "section-scorecard" }, "Scorecard"),
        sides.length
          ? h(
              "table",
              { class: "table" },
              h("caption", {}, "Agreed expectations, per side"),
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Side"), columns.map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, sides.map((s) => h("tr", {}, h("th", { scope: "row" }, s), columns.map((c) => h("td", {}, String((card[s] || {})[c] ?? 0))))))
            )
          : h("p", {}, "Nothing to count yet.")
      );
    }

    function renderDeadlines(deal) {
      const list = deal.deadlines || [];
      D.replaceChildren(
        deadlines,
        h("h2", { id: "section-deadlines" }, "Deadlines"),
        list.length
          ? h(
              "ul",
              { class: "deadlines" },
              list.map((d) =>
                h(
                  "li",
                  { class: "deadline", "data-status": d.status, "data-deadline": d.deadline },
                  h("strong", {}, D.words(d.deadline)),
                  ` · ${d.status} · due `,
                  D.when(d.due_at),
                  d.met_at ? [" · met ", D.when(d.met_at)] : null,
                  h("span", { class: "deadline-expected" }, ` · ${d.expected}`)
                )
              )
            )
          : h("p", {}, "No deadline applies now.")
      );
    }

    function balanceChart(given, received) {
      const most = Math.max(given, received, 1);
      const width = 240;
      const bar = (value) => Math.round((value / most) * (width - 90));
      return D.svg(
        "svg",
        { class: "chart", viewBox: "0 0 260 64", width: "260", height: "64", role: "img", "aria-labelledby": "chart-title" },
        D.svg("title", { id: "chart-title" }, `Concessions: the firm gave ${given}, received ${received}`),
        D.svg("text", { x: 0, y: 20, class: "chart-label" }, "given"),
        D.svg("rect", { x: 70, y: 8, width: Math.max(bar(given), 2), height: 16, class: "bar-given" }),
        D.svg("text", { x: 74 + Math.max(bar(given), 2), y: 20, class: "chart-value" }, String(given)),
        D.svg("text", { x: 0, y: 50, class: "chart-label" }, "received"),
        D.svg("rect", { x: 70, y: 38, width: Math.max(bar(received), 2), height: 16, class: "bar-received" }),
        D.svg("text", { x: 74 + Math.max(bar(received), 2), y: 50, class: "chart-value" }, String(received))
      );
    }

    function renderHealth(view) {
      const concessions = view.concessions || {};
      const given = Number(concessions.given || 0);
      const received = Number(concessions.received || 0);
      D.replaceChildren(
        health,
        h("h2", { id: "section-health" }, "Concession balance and health"),
        h("p", { class: "verdict" }, "Verdict: ", h("strong", { "data-testid": "verdict" }, view.verdict)),
        balanceChart(given, received),
        (view.warning_signs || []).length ? h("ul", { class: "warnings", "aria-label": "Warning signs" }, view.warning_signs.map((w) => h("li", {}, w))) : null,
        (view.early_concessions || []).length ? h("p", {}, `${view.early_concessions.length} early concession(s), made while a prospect.`) : null
      );
    }

    function renderHistory(history, shown) {
      const events = history.events || [];
      const through = asOf ? shown.version : null;
      D.replaceChildren(
        timeline,
        events.map((event) =>
          h(
            "li",
            { class: "fact" + (through !== null && event.version > through ? " fact-later" : ""), "data-type": event.type, "data-version": event.version },
            h("span", { class: "fact-type" }, event.type),
            h(
              "span",
              { class: "fact-meta" },
              ` v${event.version} · by `,
              h("span", { class: "fact-actor" }, event.actor),
              event.on_behalf_of ? ` for ${event.on_behalf_of}` : "",
              " · ",
              D.when(event.timestamp),
              through !== null && event.version > through ? " · after the moment shown" : ""
            ),
            factDetail(event.data) ? h("span", { class: "fact-data" }, factDetail(event.data)) : null
          )
        )
      );
      const refusals = history.refused_signings || [];
      D.replaceChildren(
        refused,
        h("h2", { id: "section-refused" }, "Refused signings"),
        refusals.length
          ? h(
              "ol",
              { class: "refusals" },
              refusals.map((r) =>
                h(
                  "li",
                  { class: "refusal", "data-attempt": r.attempt },
                  h("strong", {}, `Attempt ${r.attempt}`),
                  ` at deal version ${r.deal_version} · by ${r.actor} · `,
                  D.when(r.timestamp),
                  h("ul", {}, (r.blockers || []).map((b) => h("li", {}, b.message || b.code))),
                  r.blockers_total > (r.blockers || []).length ? h("p", {}, `… ${r.blockers_total} blockers in all`) : null
                )
              )
            )
          : h("p", {}, "No signing was refused.")
      );
    }

    function factDetail(data) {
      if (!data || typeof data !== "object") return "";
      const shown = Object.entries(data)
        .filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length))
        .map(([k, v]) => `${k}: ${D.valueText(v)}`)
        .join("; ");
      return D.truncate(shown, 240);
    }

    function renderVerify(result) {
      let line;
      if (result.status === "fulfilled") {
        const verdict = result.value.body;
        if (verdict.intact) {
          line = h("p", { class: "verify-ok", "data-intact": "true" }, h("strong", {}, "intact"), `: ${verdict.events} events, every hash recomputes from the stored events.`);
        } else {
          const problem = verdict.problem || {};
          line = h(
            "p",
            { class: "verify-broken", "data-intact": "false" },
            h("strong", {}, "broken"),
            ` at version ${problem.version}: ${problem.problem || "?"}${problem.detail ? " (" + problem.detail + ")" : ""}`
          );
        }
      } else {
        line = h("p", {}, "Could not verify: " + result.reason.message);
      }
      D.replaceChildren(verify, h("h2", { id: "section-verify" }, "Chain verification"), line);
    }

    // -- commands (emitter and admin only: no controls at all for other roles) ----------------

    // Made once, so what a command answered stays in view when the controls are drawn again.
    const result = h("div", { class: "command-result", "data-testid": "command-result", role: "status", "aria-live": "polite" });
    let controlsKey = null;

    function renderWriteControls() {
      if (!D.session.canWrite || !latest) {
        D.clear(writeSlot);
        controlsKey = null;
        return;
      }
      // Drawn again only when what they offer changes (a stage, the open conditions), so nothing typed is lost.
      const key = [latest.stage, ...((latest.conditions && latest.conditions.open) || []).map((c) => c.id)].join(" ");
      const hint = writeSlot.querySelector(".write-hint");
      if (key === controlsKey && hint) {
        hint.textContent = `Sent as ${D.session.sub}, expecting version ${latest.version}.`;
        for (const button of writeSlot.querySelectorAll("button")) button.disabled = false;
        return;
      }
      controlsKey = key;
      D.clear(writeSlot);
      const controls = [];
      const stageNow = latest.stage;
      if (stageNow === "prospect") {
        controls.push(commandButton("cmd-sign-letter-of-intent", "Sign the letter of intent", "/letter-of-intent", () => ({})));
      }
      if (stageNow === "letter_of_intent" || stageNow === "transition_meeting") {
        controls.push(meetingForm());
      }
      if (stageNow === "transition_meeting") {
        controls.push(commandButton("cmd-sign-contract", "Sign the contract", "/contract", () => ({})));
      }
      if (OPEN_STAGES.includes(stageNow)) controls.push(walkAwayForm());
      if (!controls.length) controls.push(h("p", {}, `No lifecycle command applies at stage ${STAGE_LABELS[stageNow] || stageNow}.`));
      writeSlot.append(
        h(
          "section",
          { class: "panel write-controls", "data-testid": "write-controls", "aria-labelledby": "section-commands" },
          h("h2", { id: "section-commands" }, "Commands"),
          h("p", { class: "hint write-hint" }, `Sent as ${D.session.sub}, expecting version ${latest.version}.`),
          controls,
          result
        )
      );
    }

    function commandButton(id, label, path, body) {
      return h("div", { class: "command" }, h("button", { type: "button", id, "data-command": path.slice(1), onclick: () => send(path, body()) }, label));
    }

    function meetingForm() {
      const field = (role, words) =>
        h("div", { class: "field" }, h("label", { for: "meeting-" + role }, words), h("input", { id: "meeting-" + role, type: "text", autocomplete: "off", maxlength: "200" }));
      const form = h(
        "form",
        { class: "command", id: "meeting-form" },
        h("h3", {}, "Hold the transition meeting"),
        h("p", { class: "hint" }, "Who attended (leave a role empty if no one of it came)."),
        field("sales", "Sales"),
        field("operations", "Operations"),
        field("client", "Client"),
        h("button", { type: "submit", id: "cmd-hold-transition-meeting" }, "Record the meeting")
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const participants = ["sales", "operations", "client"]
          .map((role) => ({ role, name: form.querySelector("#meeting-" + role).value.trim() }))
          .filter((p) => p.name);
        send("/transition-meeting", { participants });
      });
      return form;
    }

    function walkAwayForm() {
      const open = (latest.conditions && latest.conditions.open) || [];
      const form = h(
        "form",
        { class: "command", id: "walk-away-form" },
        h("h3", {}, "Walk away"),
        h("div", { class: "field" }, h("label", { for: "walk-away-reason" }, "Reason (required)"), h("textarea", { id: "walk-away-reason", rows: "2", maxlength: "2000" })),
        open.length
          ? h(
              "fieldset",
              { class: "cited" },
              h("legend", {}, "Cite the open walk-away conditions that caused it"),
              open.map((c) =>
                h(
                  "div",
                  { class: "check" },
                  h("input", { type: "checkbox", id: "cite-" + c.id, value: c.id, name: "cited" }),
                  h("label", { for: "cite-" + c.id }, `${D.words(c.kind)} on ${c.subject}`)
                )
              )
            )
          : null,
        h("button", { type: "submit", id: "cmd-walk-away", class: "button-danger" }, "Walk away")
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const reason = form.querySelector("#walk-away-reason").value;
        const cited = Array.from(form.querySelectorAll("input[name=cited]:checked"), (input) => input.value);
        send("/walk-away", cited.length ? { reason, cited_conditions: cited } : { reason });
      });
      return form;
    }

    async function send(path, body) {
      D.replaceChildren(result, "Sending…");
      for (const button of writeSlot.querySelectorAll("button")) button.disabled = true;
      try {
        const { body: answer } = await D.api(base + path, {
          method: "POST",
          body,
          headers: { "Idempotency-Key": D.idempotencyKey(), "If-Match": `"${latest.version}"` },
        });
        asOf = null;
        versionInput.value = "";
        momentInput.value = "";
        await load();
        D.replaceChildren(
          result,
          h("p", { class: "result-ok", "data-outcome": "ok" }, `Done: the deal is at stage ${STAGE_LABELS[answer.stage] || answer.stage}, version ${answer.version}.`)
        );
      } catch (error) {
        for (const button of writeSlot.querySelectorAll("button")) button.disabled = false;
        if (!(error instanceof D.ApiError)) {
          D.replaceChildren(result, h("p", { class: "result-error", "data-outcome": "error" }, "Not sent: " + error.message));
          return;
        }
        const errorBody = error.body || {};
        D.replaceChildren(
          result,
          h(
            "div",
            { class: "result-error", "data-outcome": "error", "data-code": errorBody.code || "" },
            h("p", {}, h("strong", {}, `${error.status} ${errorBody.code || ""}`), `: ${errorBody.message || error.message}`),
            (errorBody.errors || []).length ? h("ul", {}, errorBody.errors.map((e) => h("li", {}, h("code", {}, e.field), ": ", e.rule))) : null,
            (errorBody.blockers || []).length ? h("ul", {}, errorBody.blockers.map((b) => h("li", { class: "refused-blocker" }, b.message))) : null
          )
        );
      }
    }

    // -- live: this deal's events (or polling its version) ------------------------------------

    D.startLive({
      deal: dealId,
      onEvent: () => load(),
      poll: async () => {
        const { body } = await D.api(base);
        if (!latest || body.version !== latest.version) await load();
      },
    });
    load();
  };
})();
