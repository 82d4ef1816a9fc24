// Where is `issuers[0].max_lifetime` in the editor? A small JSON reader that
// records the source range of every value and member, keyed by the same path
// syntax the core's policy errors use (`a.b[0].c`, `.` for the document).
// It is an editor aid only: validity is always the core's `check()`.

/**
 * Maps each path to `{start, end, keyStart?, container}` (offsets into
 * `text`). Returns `null` when the text is not JSON (the core's own error
 * then carries a line and column).
 */
export function locatePaths(text) {
  const map = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const fail = () => {
    throw new SyntaxError(`unexpected input at ${i}`);
  };
  const string = () => {
    if (text[i] !== '"') fail();
    const start = i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      i++;
    }
    if (i >= text.length) fail();
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const join = (parent, seg, index) => {
    if (index) return `${parent === "." ? "" : parent}[${seg}]`;
    return parent === "." ? seg : `${parent}.${seg}`;
  };
  const value = (path, keyStart) => {
    ws();
    const start = i;
    const c = text[i];
    let container = false;
    if (c === "{") {
      container = true;
      i++;
      ws();
      if (text[i] === "}") i++;
      else {
        for (;;) {
          ws();
          const ks = i;
          const key = string();
          ws();
          if (text[i] !== ":") fail();
          i++;
          value(join(path, key, false), ks);
          ws();
          if (text[i] === ",") {
            i++;
            continue;
          }
          if (text[i] === "}") {
            i++;
            break;
          }
          fail();
        }
      }
    } else if (c === "[") {
      container = true;
      i++;
      ws();
      if (text[i] === "]") i++;
      else {
        for (let n = 0; ; n++) {
          value(join(path, String(n), true));
          ws();
          if (text[i] === ",") {
            i++;
            continue;
          }
          if (text[i] === "]") {
            i++;
            break;
          }
          fail();
        }
      }
    } else if (c === '"') {
      string();
    } else {
      const m = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
      if (!m) fail();
      i += m[0].length;
    }
    // The first occurrence wins (a duplicate key is an error the core reports at the first).
    if (!map.has(path)) map.set(path, { start, end: i, keyStart, container });
  };
  try {
    value(".");
    ws();
    if (i !== text.length) fail();
  } catch {
    return null;
  }
  return map;
}

/** Splits a core path into its prefixes, longest first: `a.b[0]` → `a.b[0]`, `a.b`, `a`, `.`. */
export function pathPrefixes(path) {
  const out = [];
  let p = path;
  while (p && p !== ".") {
    out.push(p);
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    p = cut > 0 ? p.slice(0, cut) : ".";
  }
  out.push(".");
  return out;
}

/** Offset of a 1-based line and column. */
export function offsetOf(text, line, column) {
  let off = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf("\n", off);
    if (nl < 0) return text.length;
    off = nl + 1;
  }
  return Math.min(text.length, off + Math.max(0, column - 1));
}

export const lineOf = (text, offset) => text.slice(0, offset).split("\n").length;

/**
 * The range to highlight for one problem `{path, line?, column?}`:
 * `{start, end, exact}`. A member is highlighted from its key; a value that
 * spans several lines only on its first line, so a problem deep in a block
 * does not paint the whole block.
 */
export function problemRange(text, map, problem) {
  if (map) {
    const prefixes = pathPrefixes(problem.path || ".");
    for (const [n, p] of prefixes.entries()) {
      const loc = map.get(p);
      if (!loc || (p === "." && prefixes.length > 1 && problem.line)) continue;
      const start = loc.keyStart ?? loc.start;
      let end = loc.end;
      const firstLineEnd = text.indexOf("\n", start);
      if (firstLineEnd >= 0 && firstLineEnd < end) end = firstLineEnd;
      return { start, end: Math.max(end, start + 1), exact: n === 0 };
    }
  }
  if (problem.line) {
    // Not JSON (or an unknown path): the token around the core's line and column.
    let at = offsetOf(text, problem.line, problem.column ?? 1);
    if (at >= text.length) at = Math.max(0, text.length - 1);
    let start = at;
    let end = at;
    const word = /[^\s,:{}[\]]/;
    while (start > 0 && word.test(text[start - 1]) && text[start - 1] !== "\n") start--;
    while (end < text.length && word.test(text[end])) end++;
    if (end === start) {
      // Nothing word-like here (e.g. a missing value): the character before, or the line.
      start = Math.max(0, at - 1);
      end = Math.min(text.length, start + 1);
    }
    return { start, end, exact: true };
  }
  return { start: 0, end: Math.min(text.length, 1), exact: false };
}
