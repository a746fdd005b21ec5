// The pipeline (/ui): deals by stage as columns, live; filters by owner and stage; the policy.
"use strict";

(function () {
  const D = window.Dealflow;
  const { h, STAGES, STAGE_LABELS } = D;

  // Short words for a blocker on a card; the deal page says each in full, and what clears it.
  const BLOCKER_BADGES = {
    missing_client_expectation: "no client expectation",
    missing_provider_expectation: "no provider expectation",
    expectation_not_agreed: "expectation not agreed",
    promise_not_accepted: "promise not accepted",
    attendance_incomplete: "attendance incomplete",
  };
  const DETAIL_WIDTH = 6; // deals fetched at once

  D.pages.pipeline = function (view) {
    const deals = new Map(); // id -> {summary, detail}
    const cards = new Map(); // id -> the card element
    const refreshing = new Map(); // id -> "running" | "again"

    const ownerSelect = h("select", { id: "filter-owner", name: "owner" }, h("option", { value: "" }, "All owners"));
    const stageSelect = h(
      "select",
      { id: "filter-stage", name: "stage" },
      h("option", { value: "" }, "All stages"),
      STAGES.map((stage) => h("option", { value: stage }, STAGE_LABELS[stage]))
    );
    const filters = h(
      "form",
      { class: "filters", "aria-label": "Filters", onsubmit: (event) => event.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "filter-owner" }, "Owner"), ownerSelect),
      h("div", { class: "field" }, h("label", { for: "filter-stage" }, "Stage"), stageSelect)
    );
    const status = h("p", { class: "status", id: "pipeline-status", role: "status" }, "Loading deals…");
    const columns = {};
    const board = h(
      "div",
      { class: "board", "data-testid": "board" },
      STAGES.map((stage) => {
        const count = h("span", { class: "count", "data-testid": "count-" + stage }, "0");
        const list = h("div", { class: "cards" });
        const heading = h("h2", { id: "column-" + stage }, h("span", { class: "column-name" }, STAGE_LABELS[stage]), " ", count);
        const section = h("section", { class: "column", "data-stage": stage, "aria-labelledby": "column-" + stage }, heading, list);
        columns[stage] = { section, list, count };
        return section;
      })
    );
    const policy = h(
      "section",
      { class: "panel policy", "data-testid": "policy", "aria-labelledby": "policy-heading" },
      h("h2", { id: "policy-heading" }, "Right Terms policy"),
      h("p", { class: "status" }, "Loading the policy…")
    );
    D.append(view, h("h1", { class: "page-title" }, "Pipeline"), filters, status, board, policy);

    ownerSelect.addEventListener("change", applyFilters);
    stageSelect.addEventListener("change", applyFilters);

    // -- cards ---------------------------------------------------------------------------------

    function current(id) {
      const known = deals.get(id);
      return known.detail || known.summary;
    }

    function badges(detail, summary) {
      const shown = [];
      if (detail) {
        const counted = new Map();
        for (const blocker of detail.blockers || []) {
          const label = BLOCKER_BADGES[blocker.code];
          if (!label) continue; // the stage itself, and open conditions (their own badge below)
          counted.set(label, (counted.get(label) || 0) + 1);
        }
        for (const [label, count] of counted) {
          shown.push(h("li", { class: "badge badge-blocker", "data-testid": "badge-blocker" }, count > 1 ? `${label} ×${count}` : label));
        }
        for (const condition of (detail.conditions && detail.conditions.open) || []) {
          shown.push(
            h(
              "li",
              { class: "badge badge-condition", "data-testid": "badge-condition", title: `${condition.kind} on ${condition.subject}` },
              "walk-away: " + D.words(condition.kind)
            )
          );
        }
        for (const deadline of detail.deadlines || []) {
          if (deadline.status !== "missed") continue;
          shown.push(h("li", { class: "badge badge-deadline", "data-testid": "badge-deadline", title: deadline.expected }, "missed: " + D.words(deadline.deadline)));
        }
      }
      if ((detail || summary).overdue) shown.push(h("li", { class: "badge badge-overdue", "data-testid": "badge-overdue" }, "overdue"));
      return shown;
    }

    function renderCard(id) {
      const known = deals.get(id);
      const deal = current(id);
      const detail = known.detail;
      const entered = detail && detail.stage_entered_at ? detail.stage_entered_at : null;
      const days = entered ? D.daysSince(entered) : null;
      const signals = badges(detail, known.summary);
      const card = h(
        "article",
        { class: "card", "data-testid": "card", "data-deal-id": id, "data-stage": deal.stage, "data-owner": deal.owner, "data-version": deal.version },
        h("h3", { class: "card-client" }, h("a", { href: "/ui/deals/" + encodeURIComponent(id), class: "card-link" }, deal.client_name)),
        h("p", { class: "card-title", "data-testid": "card-title" }, deal.title),
        h(
          "p",
          { class: "card-meta" },
          h("span", { "data-testid": "card-owner" }, "owner " + deal.owner),
          " · ",
          h("span", { "data-testid": "days-in-stage" }, days === null ? "…" : `${days} ${days === 1 ? "day" : "days"} in stage`)
        ),
        signals.length ? h("ul", { class: "badges", "aria-label": "Signals" }, signals) : null
      );
      const before = cards.get(id);
      if (before) before.replaceWith(card);
      cards.set(id, card);
      place(id, card, deal.stage);
    }

    // Into its stage's column, newest change first.
    function place(id, card, stage) {
      const list = (columns[stage] || columns.prospect).list;
      const updated = current(id).updated_at || "";
      let before = null;
      for (const other of list.children) {
        if (other === card) continue;
        const otherUpdated = current(other.dataset.dealId).updated_at || "";
        if (otherUpdated < updated) {
          before = other;
          break;
        }
      }
      if (card.parentNode !== list || card.nextSibling !== before) list.insertBefore(card, before);
    }

    function refreshOwners() {
      const owners = Array.from(new Set(Array.from(deals.keys(), (id) => current(id).owner))).sort();
      const chosen = ownerSelect.value;
      const present = Array.from(ownerSelect.options).slice(1).map((option) => option.value);
      if (owners.join("\u0000") === present.join("\u0000")) return;
      D.replaceChildren(ownerSelect, h("option", { value: "" }, "All owners"), owners.map((owner) => h("option", { value: owner }, owner)));
      ownerSelect.value = owners.includes(chosen) ? chosen : "";
    }

    function applyFilters() {
      const owner = ownerSelect.value;
      const stage = stageSelect.value;
      const counts = Object.fromEntries(STAGES.map((s) => [s, 0]));
      for (const [id, card] of cards) {
        const deal = current(id);
        const shown = (!owner || deal.owner === owner) && (!stage || deal.stage === stage);
        card.hidden = !shown;
        if (shown && deal.stage in counts) counts[deal.stage] += 1;
      }
      for (const s of STAGES) {
        columns[s].count.textContent = String(counts[s]);
        columns[s].section.classList.toggle("column-filtered", Boolean(stage) && stage !== s);
      }
    }

    function changed(id) {
      renderCard(id);
      refreshOwners();
      applyFilters();
    }

    // -- data ----------------------------------------------------------------------------------

    async function refresh(id) {
      if (refreshing.has(id)) {
        refreshing.set(id, "again");
        return;
      }
      refreshing.set(id, "running");
      try {
        for (;;) {
          try {
            const { body } = await D.api("/deals/" + encodeURIComponent(id));
            const known = deals.get(id) || { summary: null, detail: null };
            known.detail = body;
            known.summary = body;
            deals.set(id, known);
            changed(id);
          } catch (error) {
            // Unknown to this token, or the service is away: the next event or poll tries again (401: api() asks for a token).
          }
          if (refreshing.get(id) !== "again") break;
          refreshing.set(id, "running");
        }
      } finally {
        refreshing.delete(id);
      }
    }

    // The listing, compared with what is shown: a new or changed deal is fetched whole.
    async function poll() {
      const items = await D.listAll("/deals");
      const stale = [];
      for (const item of items) {
        const known = deals.get(item.id);
        if (!known) {
          deals.set(item.id, { summary: item, detail: null });
          changed(item.id);
          stale.push(item.id);
        } else if (current(item.id).version !== item.version) {
          known.summary = item;
          if (known.detail && known.detail.version !== item.version) known.detail = null;
          changed(item.id);
          stale.push(item.id);
        }
      }
      await D.limited(stale.map((id) => () => refresh(id)), DETAIL_WIDTH);
      return items.length;
    }

    async function load() {
      try {
        const total = await poll();
        status.textContent = total === 0 ? "No deals yet." : `${total} ${total === 1 ? "deal" : "deals"}.`;
      } catch (error) {
        status.textContent = "The deals could not be read: " + error.message;
      }
    }

    async function loadPolicy() {
      try {
        const { body } = await D.api("/policy");
        D.replaceChildren(policy, h("h2", { id: "policy-heading" }, "Right Terms policy"), renderPolicy(body));
      } catch (error) {
        D.replaceChildren(policy, h("h2", { id: "policy-heading" }, "Right Terms policy"), h("p", { class: "status" }, "The policy could not be read: " + error.message));
      }
    }

    // Live: an event names its deal; only that deal is fetched again.
    D.startLive({
      onEvent: (event) => {
        if (event && event.deal_id) refresh(String(event.deal_id));
      },
      poll: () => poll().then((total) => {
        status.textContent = `${total} ${total === 1 ? "deal" : "deals"}.`;
      }),
    });
    load();
    loadPolicy();
  };

  // The policy as the API shows it to this token: private limits only when the API includes them.
  function renderPolicy(policy) {
    const terms = Object.values(policy.terms || {});
    const showsLimits = terms.some((term) => "limit" in term);
    const table = h(
      "table",
      { class: "table", "data-testid": "policy-terms" },
      h("caption", {}, "Terms: public position" + (showsLimits ? " and private limit" : "") + " (worse for the firm when higher or lower)"),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Term"), h("th", { scope: "col" }, "Public position"), showsLimits ? h("th", { scope: "col" }, "Private limit") : null, h("th", { scope: "col" }, "Worse when"), h("th", { scope: "col" }, "What it is"))
      ),
      h(
        "tbody",
        {},
        terms.map((term) =>
          h(
            "tr",
            { "data-term": term.name },
            h("th", { scope: "row" }, term.name),
            h("td", {}, `${D.valueText(term.public)}${term.unit ? " " + term.unit : ""}`),
            showsLimits ? h("td", { "data-testid": "private-limit" }, "limit" in term ? `${D.valueText(term.limit)}${term.unit ? " " + term.unit : ""}` : "") : null,
            h("td", {}, term.worse || ""),
            h("td", {}, term.description || "")
          )
        )
      )
    );
    const list = (title, entries) =>
      h("div", { class: "policy-list" }, h("h3", {}, title), entries.length ? h("ul", {}, entries.map(([name, text]) => h("li", {}, h("strong", {}, name), ": ", text))) : h("p", {}, "none"));
    const right = policy.right_client || {};
    const deadlines = Object.entries(policy.deadlines || {}).map(([name, value]) => [name, value === null ? "does not apply" : value]);
    return h(
      "div",
      { class: "policy-body" },
      h("p", { class: "policy-version" }, (policy.label ? policy.label + " · " : "") + "version ", h("code", {}, D.truncate(policy.version || "", 23))),
      table,
      h(
        "div",
        { class: "policy-lists" },
        list("Non-negotiables", Object.entries(policy.non_negotiables || {})),
        list("Nice to have", Object.entries(policy.nice_to_haves || {})),
        list("Right client", [
          ["minimum annual value", D.valueText(right.min_annual_value)],
          ["excluded industries", D.valueText(right.excluded_industries || [])],
        ]),
        list("Concessions", Object.entries(policy.concessions || {}).map(([k, v]) => [D.words(k), D.valueText(v)])),
        list("Deadlines", deadlines.map(([k, v]) => [D.words(k), v]))
      )
    );
  }
})();
