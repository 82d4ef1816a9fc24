// A plain-textarea JSON editor with line numbers, syntax colours and
// problems highlighted in place: a transparent <textarea> over a <pre> that
// renders the same text with colours and <mark>s. No framework, no CDN.

import { locatePaths, problemRange, lineOf } from "./jsonpos.js";

const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// Token classes for colouring; anything else is plain text.
const TOKEN = /("(?:[^"\\\n]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b|([{}[\],])/g;

function tokens(text) {
  const out = [];
  TOKEN.lastIndex = 0;
  let m;
  while ((m = TOKEN.exec(text))) {
    if (m[1]) out.push([m.index, m.index + m[1].length, m[2] ? "k" : "s"]);
    else if (m[3]) out.push([m.index, m.index + m[3].length, "n"]);
    else if (m[4]) out.push([m.index, m.index + m[4].length, "l"]);
    else if (m[5]) out.push([m.index, m.index + 1, "p"]);
  }
  return out;
}

const lens = (p) => `<span class="lens">${esc(p.message)}</span>`;

export class JsonEditor {
  /** `root`: an element with `.gutter`, `.backdrop` and `textarea` children (see index.html). */
  constructor(root, { onChange } = {}) {
    this.root = root;
    this.textarea = root.querySelector("textarea");
    this.backdrop = root.querySelector(".backdrop");
    this.gutter = root.querySelector(".gutter");
    this.onChange = onChange;
    this.problems = [];
    this.ranges = [];
    // One render per frame however many input events arrive (a paste or an
    // automated fill can fire hundreds); it still runs before the next paint.
    this.textarea.addEventListener("input", () => {
      if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
      this.onChange?.(this.value);
    });
    this.textarea.addEventListener("scroll", () => this.syncScroll());
    this.textarea.addEventListener("keydown", (e) => this.#keydown(e));
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.textarea.setSelectionRange(0, 0);
    this.textarea.scrollTop = 0;
    this.textarea.scrollLeft = 0;
    this.problems = [];
    this.render();
  }

  /** Shows problems `[{path, message, line?, column?}]` in place. Returns them with `line` filled in. */
  setProblems(problems) {
    const text = this.value;
    const map = problems.length ? locatePaths(text) : null;
    this.ranges = problems.map((p) => ({ ...problemRange(text, map, p), problem: p }));
    for (const r of this.ranges) r.line = lineOf(text, r.start);
    this.problems = problems;
    this.render();
    return this.ranges;
  }

  /** Selects a problem's range and scrolls to it. */
  reveal(index) {
    const r = this.ranges[index];
    if (!r) return;
    this.textarea.focus();
    this.textarea.setSelectionRange(r.start, r.end);
    const lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 18;
    this.textarea.scrollTop = Math.max(0, (r.line - 4) * lineHeight);
    this.syncScroll();
  }

  render() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const text = this.value;
    // Marks must nest: sort by start, longer first; clip any that would cross.
    const marks = this.ranges
      .map((r, i) => ({ start: r.start, end: Math.min(r.end, text.length), i }))
      .filter((m) => m.end > m.start)
      .sort((a, b) => a.start - b.start || b.end - a.end);
    const stack = [];
    for (const m of marks) {
      while (stack.length && stack[stack.length - 1].end <= m.start) stack.pop();
      const top = stack[stack.length - 1];
      if (top && m.end > top.end) m.end = top.end;
      stack.push(m);
    }
    // The first problem of each line is also written at the line's end (an
    // "error lens"): text after the last character shifts nothing else.
    const lenses = new Map();
    for (const r of this.ranges) {
      let eol = text.indexOf("\n", Math.min(r.start, text.length));
      if (eol < 0) eol = text.length;
      if (!lenses.has(eol)) lenses.set(eol, r.problem);
    }
    const bounds = new Set([0, text.length, ...lenses.keys()]);
    const toks = tokens(text);
    for (const [s, e] of toks) bounds.add(s).add(e);
    for (const m of marks) bounds.add(m.start).add(m.end);
    const points = [...bounds].sort((a, b) => a - b);
    const classAt = new Map(toks.map(([s, e, c]) => [s, [e, c]]));
    let html = "";
    let tok = null; // [end, class]
    const open = [];
    const opens = new Map();
    const closes = new Map();
    for (const m of marks) {
      (opens.get(m.start) ?? opens.set(m.start, []).get(m.start)).push(m);
      (closes.get(m.end) ?? closes.set(m.end, []).get(m.end)).push(m);
    }
    for (let k = 0; k < points.length - 1; k++) {
      const s = points[k];
      const e = points[k + 1];
      for (const m of closes.get(s) ?? []) {
        if (open.includes(m)) {
          html += "</mark>";
          open.splice(open.indexOf(m), 1);
        }
      }
      if (lenses.has(s)) html += lens(lenses.get(s));
      for (const m of opens.get(s) ?? []) {
        const p = this.ranges[m.i].problem;
        html += `<mark class="problem" data-index="${m.i}" data-path="${esc(p.path ?? ".").replace(/"/g, "&quot;")}">`;
        open.push(m);
      }
      if (classAt.has(s)) tok = classAt.get(s);
      if (tok && s >= tok[0]) tok = null;
      const piece = esc(text.slice(s, e));
      html += tok ? `<span class="t${tok[1]}">${piece}</span>` : piece;
    }
    while (open.length) {
      open.pop();
      html += "</mark>";
    }
    if (lenses.has(text.length)) html += lens(lenses.get(text.length));
    // A trailing newline needs one more line box to keep heights equal.
    this.backdrop.innerHTML = html + "\n";

    const lines = text.split("\n").length;
    const bad = new Map();
    for (const r of this.ranges) if (!bad.has(r.line)) bad.set(r.line, r.problem);
    let g = "";
    for (let n = 1; n <= lines; n++) {
      const p = bad.get(n);
      g += p
        ? `<div class="ln bad" data-line="${n}" title="${esc(`${p.path}: ${p.message}`).replace(/"/g, "&quot;")}">${n}</div>`
        : `<div class="ln">${n}</div>`;
    }
    this.gutter.firstElementChild.innerHTML = g;
    this.syncScroll();
  }

  syncScroll() {
    const { scrollTop, scrollLeft } = this.textarea;
    this.backdrop.style.transform = `translate(${-scrollLeft}px, ${-scrollTop}px)`;
    this.gutter.firstElementChild.style.transform = `translateY(${-scrollTop}px)`;
  }

  #keydown(e) {
    const ta = this.textarea;
    if (e.key === "Escape") {
      // Tab indents inside the editor; Escape hands the keyboard back to the page.
      ta.blur();
    } else if (e.key === "Tab" && !e.ctrlKey && !e.metaKey && !e.altKey) {
      // Indent with two spaces instead of leaving the editor.
      e.preventDefault();
      const { selectionStart: s, selectionEnd: t } = ta;
      ta.setRangeText("  ", s, t, "end");
      ta.dispatchEvent(new Event("input"));
    } else if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) {
      // Keep the indentation of the current line.
      e.preventDefault();
      const s = ta.selectionStart;
      const lineStart = ta.value.lastIndexOf("\n", s - 1) + 1;
      const indent = /^[ \t]*/.exec(ta.value.slice(lineStart))[0];
      const extra = /[{[]\s*$/.test(ta.value.slice(lineStart, s)) ? "  " : "";
      ta.setRangeText("\n" + indent + extra, s, ta.selectionEnd, "end");
      ta.dispatchEvent(new Event("input"));
    }
  }
}
