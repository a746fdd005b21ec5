// Alerts (/ui/alerts): what the notifier delivered or dead-lettered, with each alert's tries,
// and the messages it could not read; filterable by deal. Read from GET /alerts (ops, auditor, admin).
"use strict";

(function () {
  const D = window.Dealflow;
  const { h } = D;

  D.pages.alerts = function (view) {
    const initial = new URLSearchParams(location.search).get("deal") || "";
    const dealInput = h("input", { id: "filter-deal", type: "search", value: initial, autocomplete: "off", spellcheck: "false", placeholder: "a deal id" });
    const form = h(
      "form",
      { class: "filters", "aria-label": "Filter alerts", id: "alerts-filter" },
      h("div", { class: "field" }, h("label", { for: "filter-deal" }, "Deal"), dealInput),
      h("div", { class: "buttons" }, h("button", { type: "submit", id: "filter-deal-apply" }, "Filter"))
    );
    const status = h("p", { class: "status", role: "status", "data-testid": "alerts-status" }, "Loading alerts…");
    const alerts = h("section", { class: "panel", "data-testid": "alerts", "aria-labelledby": "alerts-heading" }, h("h2", { id: "alerts-heading" }, "Alerts"));
    const dead = h("section", { class: "panel", "data-testid": "dead-letters", "aria-labelledby": "dead-heading" }, h("h2", { id: "dead-heading" }, "Dead letters"));
    D.append(view, h("h1", { class: "page-title" }, "Alerts"), form, status, alerts, dead);

    let sequence = 0;
    let timer = null;

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const deal = dealInput.value.trim();
      history.replaceState(null, "", "/ui/alerts" + (deal ? "?deal=" + encodeURIComponent(deal) : ""));
      load();
    });
    dealInput.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(load, 400);
    });

    async function load() {
      const mine = ++sequence;
      const deal = dealInput.value.trim();
      const query = "?limit=200" + (deal ? "&deal_id=" + encodeURIComponent(deal) : "");
      try {
        const { body } = await D.api("/alerts" + query);
        if (mine !== sequence) return;
        render(body, deal);
      } catch (error) {
        if (mine !== sequence) return;
        const code = error.body && error.body.code;
        if (code === "alerts_unavailable") status.textContent = error.message;
        else if (error.status === 403) status.textContent = "Your token's roles may not read alerts (ops, auditor and admin may).";
        else status.textContent = "The alerts could not be read: " + error.message;
        D.replaceChildren(alerts, h("h2", { id: "alerts-heading" }, "Alerts"), h("p", {}, "Nothing to show."));
        D.replaceChildren(dead, h("h2", { id: "dead-heading" }, "Dead letters"), h("p", {}, "Nothing to show."));
      }
    }

    function render(body, deal) {
      const items = body.alerts || [];
      const failed = items.filter((a) => a.status !== "delivered").length;
      status.textContent = `${items.length} ${items.length === 1 ? "alert" : "alerts"}${deal ? " of this deal" : ""}, ${failed} dead-lettered; from the notifier's store (${body.store}).`;
      D.replaceChildren(
        alerts,
        h("h2", { id: "alerts-heading" }, "Alerts"),
        items.length
          ? h(
              "table",
              { class: "table alerts-table" },
              h("caption", {}, "Newest first; each alert's tries under it"),
              h(
                "thead",
                {},
                h("tr", {}, ["When", "Outcome", "Event", "Deal", "Recipient", "Tries"].map((c) => h("th", { scope: "col" }, c)))
              ),
              h("tbody", {}, items.map(row))
            )
          : h("p", {}, "No alerts.")
      );
      const letters = body.dead_letters || [];
      D.replaceChildren(
        dead,
        h("h2", { id: "dead-heading" }, "Dead letters"),
        h("p", { class: "hint" }, "Messages the notifier could not read, with why."),
        letters.length
          ? h(
              "ul",
              { class: "dead-letters" },
              letters.map((letter) =>
                h("li", { class: "dead-letter", "data-testid": "dead-letter" }, D.when(letter.at), " ", h("code", {}, letter.subject), ": ", letter.reason, h("span", { class: "hint" }, ` (${letter.message_id})`))
              )
            )
          : h("p", {}, "None.")
      );
    }

    function row(alert) {
      const tries = alert.tries || [];
      return h(
        "tr",
        { class: "alert", "data-testid": "alert", "data-status": alert.status, "data-deal-id": alert.deal_id },
        h("td", {}, D.when(alert.updated_at)),
        h("td", {}, h("span", { class: "badge " + (alert.status === "delivered" ? "badge-ok" : "badge-condition") }, alert.status)),
        h("td", {}, alert.event_type),
        h("td", {}, h("a", { href: "/ui/deals/" + encodeURIComponent(alert.deal_id) }, D.truncate(alert.deal_id, 13))),
        h("td", {}, `${alert.recipient} via ${alert.channel}`, alert.address ? h("span", { class: "hint" }, ` <${alert.address}>`) : null),
        h(
          "td",
          {},
          h(
            "details",
            {},
            h("summary", {}, `${alert.attempts} ${alert.attempts === 1 ? "try" : "tries"}`),
            h(
              "ol",
              { class: "tries" },
              tries.map((t) => h("li", {}, D.when(t.at), ` ${t.result}`, t.error ? `: ${D.truncate(t.error, 300)}` : ""))
            ),
            alert.last_error ? h("p", { class: "hint" }, "last error: " + D.truncate(alert.last_error, 300)) : null
          )
        )
      );
    }

    // New alerts follow events: refresh on each event (or every few seconds without the stream).
    let pending = null;
    D.startLive({
      onEvent: () => {
        clearTimeout(pending);
        pending = setTimeout(load, 1500);
      },
      poll: () => load(),
    });
    load();
  };
})();
