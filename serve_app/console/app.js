// The console's start: sign in with a JWT (kept in this tab's sessionStorage), then the views the
// token's scopes allow. The API checks every call; the scopes here only decide what is offered.
"use strict";

import { claims, signIn, signOut, token } from "./api.js";
import { h, message, on } from "./dom.js";
import { approvals, backtestView, config, ladder, metrics, ordersView, positions, whatIf } from "./views.js";

const VIEWS = [
  { id: "positions", title: "Positions", scope: "balances:read", show: positions },
  { id: "orders", title: "Orders", scope: "orders:read", show: ordersView },
  { id: "approvals", title: "Approvals", scope: ["orders:approve", "orders:read"], show: approvals },
  { id: "ladder", title: "Investment ladder", scope: "balances:read", show: ladder },
  { id: "backtest", title: "VaR backtest", scope: "balances:read", show: backtestView },
  { id: "metrics", title: "Metrics", scope: "balances:read", show: metrics },
  { id: "config", title: "Configuration", scope: "balances:read", show: config },
  { id: "whatif", title: "What-if", scope: "risk:run", show: whatIf },
];

const main = document.getElementById("main");
const who = document.getElementById("who");
let timers = [];

function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

function signInForm(problem) {
  const box = h("textarea", { id: "token", rows: 4, cols: 80, placeholder: "eyJ...", spellcheck: "false",
    autocomplete: "off" });
  const go = on(h("button", { type: "button", id: "sign-in" }, "Sign in"), "click", () => {
    const c = claims(box.value);
    if (!c) {
      main.replaceChildren(signInForm("That is not a JWT."));
      return;
    }
    signIn(box.value);
    start();
  });
  return h("section", { class: "signin" },
    h("h2", null, "Sign in"),
    h("p", null, "Paste a token of this service (treasury-orch token --subject <you> --scopes ...). It is kept "
      + "in this tab only and sent to this server only."),
    problem ? message("error", problem) : null, box, h("div", null, go));
}

function allowed(view, scopes) {
  const needed = Array.isArray(view.scope) ? view.scope : [view.scope];
  return needed.some((x) => scopes.has(x));
}

function start() {
  stopTimers();
  const jwt = token();
  const c = claims(jwt);
  if (!c) {
    who.replaceChildren();
    main.replaceChildren(signInForm(jwt ? "The stored token is not a JWT." : null));
    return;
  }
  const expired = c.exp && c.exp.getTime() < Date.now();
  // One wrapper built by h(), which skips absent children (replaceChildren would print "null").
  who.replaceChildren(h("span", { class: "who" },
    h("span", { id: "subject" }, c.sub), " ",
    h("span", { id: "scopes", class: "scopes" }, [...c.scopes].join(" ") || "(no scope)"),
    expired ? h("span", { class: "expired" }, " token expired") : null, " ",
    on(h("button", { type: "button", id: "sign-out" }, "Sign out"), "click", () => {
      signOut();
      location.hash = "";
      start();
    })));
  const views = VIEWS.filter((v) => allowed(v, c.scopes));
  if (views.length === 0) {
    main.replaceChildren(message("error", "This token has no scope the console can use."));
    return;
  }
  const wanted = location.hash.slice(1);
  const current = views.find((v) => v.id === wanted) || views[0];
  const nav = h("nav", null, views.map((v) => h("a", { href: `#${v.id}`, id: `tab-${v.id}`,
    class: v === current ? "tab current" : "tab" }, v.title)));
  const body = h("section", { id: `view-${current.id}`, class: "view" });
  main.replaceChildren(nav, body);
  const ctx = {
    can: (scope) => c.scopes.has(scope),
    every: (ms, fn) => {
      const t = setInterval(async () => {
        if ((await fn()) === true) clearInterval(t);
      }, ms);
      timers.push(t);
    },
  };
  current.show(body, ctx).catch((exc) => body.replaceChildren(message("error", `view failed: ${exc}`)));
}

window.addEventListener("hashchange", start);
start();
