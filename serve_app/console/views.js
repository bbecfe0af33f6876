// The console's views. Each takes (node, ctx): ctx.call(method, path, body) and ctx.can(scope).
// Every figure comes from the API as text and is shown as text.
"use strict";

import { call, reason } from "./api.js";
import { compact, lineChart, stackedBars } from "./charts.js";
import { facts, h, message, num, on, table, usd, when } from "./dom.js";

const enc = encodeURIComponent;

async function load(node, path) {
  node.replaceChildren(message("info", "Loading..."));
  const answer = await call("GET", path);
  if (!answer.ok) {
    node.replaceChildren(message("error", answer.status === 404 ? `${path}: not available on this server (404)`
      : reason(answer)));
    return null;
  }
  return answer.body;
}

async function accountIds() {
  const answer = await call("GET", "/accounts");
  return answer.ok ? answer.body.accounts.map((a) => a.account_id) : [];
}

function accountPicker(ids, id) {
  return h("select", { id, name: id }, ids.map((a) => h("option", { value: a }, a)));
}

// -- positions --------------------------------------------------------------------------------------
export async function positions(node) {
  const body = await load(node, "/accounts");
  if (!body) return;
  const rows = body.accounts.map((a) => {
    const p = a.position || {};
    return [a.account_id, usd(p.available_usd), usd(p.pending_sweeps_usd), usd(p.invested_usd ?? "0"),
      usd(p.excess_usd), p.var_bps === undefined || p.var_bps === null ? "-" : num(p.var_bps, 2),
      usd(a.projection_usd), a.projection_source, a.position ? when(p.as_of_ts) : "no live position"];
  });
  node.replaceChildren(
    h("h2", null, `Positions (${body.count} accounts)`),
    table(["account", "available", "pending sweeps", "invested", "excess", "VaR bps", "24 h projection",
      "projection source", "as of"], rows, (i) => ({ "data-account": body.accounts[i].account_id })),
    h("p", { class: "note" }, "Excess = available - pending sweeps - minimum balance. The projection is the one the "
      + "account's next decision would use: the event's own, the feed's last (last_seen), the forecast, or none."));
}

// -- orders -----------------------------------------------------------------------------------------
function decisionFacts(d) {
  if (!d) return message("info", "No decision record.");
  const inputs = d.inputs || {};
  return facts([
    ["reason", d.reason], ["explanation", d.explanation], ["excess", usd(d.excess_usd)],
    ["buffer kept", usd(d.buffer_usd)], ["VaR bps / limit", `${num(d.observed_var_bps)} / ${num(d.var_limit_bps)}`],
    ["available", usd(inputs.available_usd)], ["pending sweeps", usd(inputs.pending_sweeps_usd)],
    ["min balance", usd(inputs.min_balance_usd)],
    ["projection (source)", `${usd(inputs.eod_projection_usd)} (${inputs.projection_source ?? "-"})`],
    ["ladder days", d.ladder_days ?? "-"],
  ]);
}

async function orderDetail(panel, listed) {
  panel.replaceChildren(message("info", "Loading..."));
  const answer = await call("GET", `/sweep-intent/${enc(listed.order_id)}`);
  if (!answer.ok) {
    panel.replaceChildren(message("error", reason(answer)));
    return;
  }
  const o = answer.body;
  const history = Object.entries(o.status_history || {}).sort((a, b) => String(a[1]).localeCompare(String(b[1])));
  const parts = [
    h("h3", null, `Order ${o.order_id}`),
    facts([["status", o.status], ["account", o.source_account], ["product", o.target_product],
      ["amount", usd(o.amount_usd)], ["cut-off", when(o.cutoff_utc)], ["created", when(o.created_ts)],
      ["failure reason", o.failure_reason ?? "-"]]),
    h("h4", null, "Status history"),
    table(["status", "at"], history.map(([k, v]) => [k, when(v)])),
    h("h4", null, "Decision"),
    decisionFacts(listed.decision),
  ];
  if (Array.isArray(o.approvals) && o.approvals.length > 0) {
    parts.push(h("h4", null, "Approvals"),
      table(["by", "at", "comment"], o.approvals.map((a) => [a.subject, when(a.ts), a.comment ?? ""])));
  }
  if (o.settlement) parts.push(h("h4", null, "Settlement"), h("pre", null, JSON.stringify(o.settlement, null, 2)));
  if (o.investment) parts.push(h("h4", null, "Investment"), h("pre", null, JSON.stringify(o.investment, null, 2)));
  panel.replaceChildren(...parts);
}

export async function ordersView(node) {
  const status = h("select", { id: "order-status" }, ["", "AWAITING_APPROVAL", "NEW", "SENT", "ACK", "SETTLED",
    "FAILED", "REJECTED", "EXPIRED"].map((x) => h("option", { value: x }, x || "any status")));
  const account = h("input", { id: "order-account", placeholder: "account id", maxlength: 64 });
  const list = h("div");
  const panel = h("div", { class: "detail" });
  let latest = 0; // only the answer to the latest filter is shown
  async function refresh() {
    const q = new URLSearchParams({ limit: "50" });
    if (status.value) q.set("status", status.value);
    if (account.value.trim()) q.set("account_id", account.value.trim());
    const mine = ++latest;
    const body = await load(list, `/orders?${q}`);
    if (!body || mine !== latest) return;
    const rows = body.orders.map((o) => [
      on(h("a", { href: "#orders", class: "order-link" }, o.order_id), "click", (e) => {
        e.preventDefault();
        orderDetail(panel, o);
      }),
      o.source_account, o.target_product, usd(o.amount_usd), o.status, when(o.created_ts),
      (o.decision && o.decision.explanation) || "-"]);
    list.replaceChildren(table(["order", "account", "product", "amount", "status", "created", "why"], rows,
      (i) => ({ "data-order": body.orders[i].order_id, "data-status": body.orders[i].status })));
  }
  node.replaceChildren(h("h2", null, "Orders (newest first)"),
    h("div", { class: "toolbar" }, status, account, on(h("button", { type: "button" }, "Show"), "click", refresh)),
    list, panel);
  await refresh();
}

// -- approvals --------------------------------------------------------------------------------------
export async function approvals(node, ctx) {
  const canApprove = ctx.can("orders:approve");
  const note = h("div", { id: "approval-result" });
  const list = h("div");
  async function act(order, verb, comment) {
    const answer = await call("POST", `/sweep-intent/${enc(order.order_id)}/${verb}`, { comment: comment || null });
    let said;
    if (!answer.ok) {
      said = message("error", `${verb} ${order.order_id}: ${reason(answer)}`);
    } else {
      const b = answer.body;
      const text = `${order.order_id}: ${b.status}${b.changed ? "" : " (unchanged)"}${b.reason ? ": " + b.reason : ""}`
        + ` - ${(b.approvals || []).length} approval(s)`;
      said = message(b.changed ? "ok" : "info", text);
    }
    await refresh(); // the queue first, then the verdict: what the message says is already on screen
    note.replaceChildren(said);
  }
  async function refresh() {
    const answer = await call("GET", "/approvals");
    if (answer.status === 404) {
      list.replaceChildren(message("info", "The approval queue is not available on this server (no /approvals route)."));
      return;
    }
    if (!answer.ok) {
      list.replaceChildren(message("error", reason(answer)));
      return;
    }
    const orders = answer.body.orders || [];
    if (orders.length === 0) {
      list.replaceChildren(message("info", "No order awaits approval."));
      return;
    }
    const rows = orders.map((o) => {
      const by = (o.approvals || []).map((a) => `${a.subject} (${when(a.ts)})`).join(", ") || "none yet";
      const cells = [o.order_id, o.account_id, o.product, usd(o.amount_usd), when(o.created_ts), when(o.cutoff_ts),
        `${(o.approvals || []).length} of ${o.approvals_required}: ${by}`];
      if (canApprove) {
        const comment = h("input", { class: "comment", placeholder: "comment (optional)", maxlength: 2000 });
        cells.push(h("span", { class: "actions" }, comment,
          on(h("button", { type: "button", class: "approve" }, "Approve"), "click", () => act(o, "approve", comment.value)),
          on(h("button", { type: "button", class: "reject" }, "Reject"), "click", () => act(o, "reject", comment.value))));
      }
      return cells;
    });
    const headers = ["order", "account", "product", "amount", "created", "cut-off", "approvals"];
    list.replaceChildren(table(canApprove ? [...headers, "decide"] : headers, rows,
      (i) => ({ "data-order": orders[i].order_id })));
  }
  node.replaceChildren(h("h2", null, "Approval queue"),
    canApprove ? h("p", { class: "note" }, "Orders above the approval threshold wait for approvers other than each "
      + "other; a rejection ends the order.")
      : message("info", "Your token lacks the orders:approve scope: the queue is read-only for you."),
    note, list);
  await refresh();
}

// -- investment ladder ------------------------------------------------------------------------------
export async function ladder(node) {
  const before = h("input", { id: "ladder-before", type: "date" });
  const out = h("div");
  async function refresh() {
    const path = before.value ? `/investments?maturing_before=${enc(before.value)}` : "/investments";
    const body = await load(out, path);
    if (!body) return;
    const days = [...new Set(body.ladder.map((r) => r.maturity_date))].sort();
    const products = [...new Set(body.ladder.map((r) => r.product))].sort();
    const stacks = products.map((p) => ({ label: p, values: days.map((d) => body.ladder
      .filter((r) => r.maturity_date === d && r.product === p).reduce((acc, r) => acc + Number(r.principal_usd), 0)) }));
    out.replaceChildren(
      facts([["open investments", String(body.count)], ["total principal", usd(body.total_usd)]]),
      stackedBars(days, stacks, { title: "principal maturing per day" }),
      table(["maturity", "product", "principal"], body.ladder.map((r) => [r.maturity_date, r.product,
        usd(r.principal_usd)])));
  }
  node.replaceChildren(h("h2", null, "Investment ladder"),
    h("div", { class: "toolbar" }, h("label", { for: "ladder-before" }, "maturing before "), before,
      on(h("button", { type: "button" }, "Show"), "click", refresh)), out);
  await refresh();
}

// -- VaR backtest -----------------------------------------------------------------------------------
export async function backtestView(node) {
  const ids = await accountIds();
  const pick = accountPicker(ids, "backtest-account");
  const out = h("div");
  let latest = 0; // a slower answer for an earlier pick must not replace the plot of the latest one
  async function refresh() {
    if (!pick.value) {
      out.replaceChildren(message("info", "No account."));
      return;
    }
    const mine = ++latest;
    const body = await load(out, `/accounts/${enc(pick.value)}/var/backtest`);
    if (!body || mine !== latest) return;
    const index = body.days.map((d, i) => i);
    const flows = body.days.map((d, i) => [i, d.flow_usd]);
    const varLine = body.days.filter((d) => d.var_usd !== null).map((d) => [body.days.indexOf(d), -d.var_usd]);
    const marks = body.days.filter((d) => d.exception).map((d) => [body.days.indexOf(d), d.flow_usd]);
    const r = body.report;
    out.dataset.account = body.account_id; // which account the plot below is of (a change of pick reloads it)
    out.replaceChildren(
      lineChart([{ label: "daily operating flow", points: flows }, { label: "-VaR (forecast)", points: varLine }],
        { title: "VaR backtest", markers: marks, xFormat: (v) => (body.days[Math.round(v)] || {}).date || "" }),
      r ? facts([["days tested", String(r.observations)], ["exceptions (expected)",
        `${r.exceptions} (${num(r.expected_exceptions)})`], ["Kupiec p", num(r.p_pof, 4)],
      ["Christoffersen p", num(r.p_ind, 4)], ["conditional coverage p", num(r.p_cc, 4)],
      ["Basel traffic light", String(r.zone).toUpperCase()], ["window", `${body.window} days`]])
        : message("info", `No VaR forecast yet (${index.length} days of closes).`));
  }
  on(pick, "change", refresh);
  node.replaceChildren(h("h2", null, "VaR backtest"), h("div", { class: "toolbar" }, pick), out);
  await refresh();
}

// -- metrics ----------------------------------------------------------------------------------------
const kept = { swept_usd: new Map(), var_bps: new Map(), latency_seconds: new Map() };

function remember(name, series) {
  // Own figures come one point per call: keep the last 360 per series in this tab.
  for (const one of series) {
    const old = kept[name].get(one.label) || [];
    kept[name].set(one.label, old.concat(one.points).slice(-360));
  }
  return [...kept[name]].map(([label, points]) => ({ label, points }));
}

export async function metrics(node, ctx) {
  const out = h("div");
  const clock = (v) => new Date(v * 1000).toISOString().slice(11, 19);
  async function refresh() {
    const answer = await call("GET", "/metrics/series?window_s=1800");
    if (!answer.ok) {
      out.replaceChildren(message("error", reason(answer)));
      return;
    }
    const b = answer.body;
    const pick = (name) => (b.source === "prometheus" ? b.series[name] : remember(name, b.series[name]));
    out.replaceChildren(
      message("info", b.source === "prometheus" ? `From Prometheus (${b.prometheus}), last 30 minutes.`
        : "From the service's own figures (no Prometheus of this service): one point per refresh."),
      h("h3", null, "Swept USD by product (cumulative)"),
      lineChart(pick("swept_usd"), { title: "swept USD", xFormat: clock }),
      h("h3", null, "VaR bps (largest over accounts)"),
      lineChart(pick("var_bps"), { title: "VaR bps", xFormat: clock }),
      h("h3", null, "Decision latency p50 / p95 (seconds)"),
      lineChart(pick("latency_seconds"), { title: "latency", xFormat: clock, yFormat: (v) => compact(v) }));
  }
  node.replaceChildren(h("h2", null, "Metrics"), out);
  await refresh();
  ctx.every(10_000, refresh);
}

// -- configuration ----------------------------------------------------------------------------------
export async function config(node) {
  const body = await load(node, "/config");
  if (!body) return;
  const policy = Object.entries(body.policy).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]);
  const settings = Object.entries(body.settings).map(([k, v]) => [k, String(v)]);
  node.replaceChildren(h("h2", null, "Configuration in force"),
    facts([["version", String(body.version)], ["source", body.source]]),
    h("h3", null, "Policy"), facts(policy), h("h3", null, "Settings"), facts(settings),
    h("p", { class: "note" }, "Version 0 is the environment's configuration; each live change from Consul adds one."));
}

// -- what-if ----------------------------------------------------------------------------------------
const KEYS = [["LIQ_BUFFER_PCT", "0.30"], ["VAR_LIMIT_BPS", "10"], ["TARGET_LADDER_DAYS", "28"],
  ["MIN_SWEEP_USD", "100000"], ["SWEEP_CUTOFFS_UTC", "00:30,15:30"]];

function policySet(inputs) {
  const set = {};
  for (const [key, input] of Object.entries(inputs)) {
    const v = input.value.trim();
    if (!v) continue;
    set[key] = key === "SWEEP_CUTOFFS_UTC" ? v.split(",").map((x) => x.trim()) : Number(v);
  }
  return set;
}

function decisionRows(live, whatIf) {
  const row = (label, f) => [label, f(live), f(whatIf)];
  return [row("order", (d) => (d.order ? "yes" : "no")), row("product", (d) => d.product ?? "-"),
    row("amount", (d) => usd(d.amount_usd)), row("cut-off", (d) => when(d.cutoff_utc)),
    row("reason", (d) => d.reason), row("explanation", (d) => d.explanation),
    row("buffer kept", (d) => usd(d.buffer_usd))];
}

export async function whatIf(node, ctx) {
  const ids = await accountIds();
  const pick = accountPicker(ids, "whatif-account");
  const inputs = Object.fromEntries(KEYS.map(([k, hint]) => [k, h("input", { id: `set-${k}`, placeholder: hint })]));
  const available = h("input", { id: "whatif-available", placeholder: "live balance" });
  const projection = h("input", { id: "whatif-projection", placeholder: "live projection" });
  const out = h("div", { id: "whatif-result" });
  const replayOut = h("div", { id: "replay-result" });
  const from = h("input", { id: "replay-from", type: "date" });
  const days = h("input", { id: "replay-days", type: "number", min: 1, max: 366, value: 1 });
  async function run() {
    if (!pick.value) {
      out.replaceChildren(message("error", "Choose an account."));
      return;
    }
    const body = { set: policySet(inputs) };
    if (available.value.trim()) body.available_usd = available.value.trim();
    if (projection.value.trim()) body.eod_projection_usd = projection.value.trim();
    const answer = await call("POST", `/accounts/${enc(pick.value)}/what-if`, body);
    if (!answer.ok) {
      out.replaceChildren(message("error", reason(answer)));
      return;
    }
    const b = answer.body;
    out.replaceChildren(h("h3", null, `Decision for ${b.account_id} (configuration version ${b.config_version})`),
      table(["", "configuration in force", "what-if"], decisionRows(b.live, b.what_if)));
  }
  async function replay() {
    if (!from.value) {
      replayOut.replaceChildren(message("error", "Choose the first day to replay."));
      return;
    }
    const body = { from: from.value, days: Number(days.value || 1), set: policySet(inputs) };
    if (pick.value) body.accounts = [pick.value];
    const answer = await call("POST", "/risk/replay", body);
    if (!answer.ok) {
      replayOut.replaceChildren(message("error", reason(answer)));
      return;
    }
    const job = answer.body.job_id;
    const poll = async () => {
      const state = await call("GET", `/risk/replay/${enc(job)}`);
      if (!state.ok) {
        replayOut.replaceChildren(message("error", reason(state)));
        return true;
      }
      replayOut.replaceChildren(facts([["job", job], ["status", state.body.status]]),
        h("pre", null, JSON.stringify(state.body, null, 2)));
      return state.body.status === "done" || state.body.status === "failed";
    };
    if (!(await poll())) ctx.every(2000, poll);
  }
  const form = h("div", { class: "form" },
    h("label", null, "account ", pick),
    ...KEYS.map(([k]) => h("label", null, `${k} `, inputs[k])),
    h("label", null, "available USD ", available), h("label", null, "24 h projection USD ", projection));
  node.replaceChildren(h("h2", null, "What-if"),
    h("p", { class: "note" }, "One decision on the account as it stands now, with the keys you fill in changed. "
      + "Nothing is written. Empty fields keep the configuration in force."),
    form, on(h("button", { type: "button", id: "whatif-run" }, "Decide"), "click", run), out,
    ctx.can("risk:run") ? h("div", null, h("h3", null, "Replay the ledger with these keys"),
      h("div", { class: "toolbar" }, h("label", null, "from ", from), h("label", null, "days ", days),
        on(h("button", { type: "button", id: "replay-run" }, "Replay"), "click", replay)), replayOut) : null);
}
