// Building the page without markup strings: every text is a text node (textContent), never HTML.
// The page's policy requires Trusted Types with no policy at all, so assigning a string as markup would
// throw: data can only ever be shown as text.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") || name === "style") throw new Error(`attribute ${name} is not allowed`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element with attributes and children (strings become text nodes). */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function on(node, event, handler) {
  node.addEventListener(event, handler);
  return node;
}

/**
 * A decimal string (the API's money) with thousands separators, exactly as given: never rounded nor
 * cut (109046859.3250 shows as 109,046,859.325), trailing zeros dropped down to cents.
 */
export function usd(text) {
  if (text === null || text === undefined || text === "") return "-";
  const raw = String(text);
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(raw);
  if (!match) return raw;
  const whole = match[2].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fraction = (match[3] || "").replace(/0+$/, "").padEnd(2, "0");
  return `${match[1]}${whole}.${fraction}`;
}

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "-";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function when(iso) {
  if (!iso) return "-";
  return String(iso).replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A key/value table. */
export function facts(rows) {
  return h("table", { class: "facts" },
    h("tbody", null, rows.map(([k, v]) => h("tr", null, h("th", null, k), h("td", null, v)))));
}

/** A table: headers and rows of cells (strings or nodes); ``attrsOf(row)`` for each row's attributes. */
export function table(headers, rows, attrsOf) {
  return h("table", { class: "grid" },
    h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
    h("tbody", null, rows.map((cells, i) => h("tr", attrsOf ? attrsOf(i) : null, cells.map((c) => h("td", null, c))))));
}

export function message(kind, text) {
  return h("p", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
