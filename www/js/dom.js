// Tiny DOM helpers: build elements without innerHTML for anything that holds
// user or token data.

/** `h("div.card#x", {onclick, title, dataset: {...}}, child, "text", ...)`. */
export function h(spec, attrs, ...children) {
  const [, tag = "div", rest = ""] = /^([a-z0-9-]*)(.*)$/i.exec(spec);
  const el = document.createElement(tag || "div");
  for (const m of rest.matchAll(/([.#])([\w-]+)/g)) {
    if (m[1] === ".") el.classList.add(m[2]);
    else el.id = m[2];
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Lowercase, concrete relative time: "in 4 min 10 s", "42 s ago". */
export function relTime(seconds) {
  const a = Math.abs(Math.round(seconds));
  const parts = a >= 86400 ? `${Math.floor(a / 86400)} d ${Math.floor((a % 86400) / 3600)} h`
    : a >= 3600 ? `${Math.floor(a / 3600)} h ${Math.floor((a % 3600) / 60)} min`
    : a >= 60 ? `${Math.floor(a / 60)} min ${a % 60} s`
    : `${a} s`;
  return seconds >= 0 ? `in ${parts}` : `${parts} ago`;
}

export const isoTime = (seconds) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");

/** Saves text as a file. */
export function download(name, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
