/**
 * A documented subset of Go's text/template, enough for `inspect --format` as skopeo users write it:
 *
 *   {{.Field}}  {{.Field.Sub}}  {{.}}          a value (maps and lists print like Go's fmt: map[k:v], [a b])
 *   {{json .Field}}                            the value as JSON
 *   {{index .Labels "key"}}                    a map entry or list element
 *   {{len .Layers}}                            a length
 *   {{range .RepoTags}}…{{.}}…{{end}}          iterate a list (or map values), `.` is the element
 *   {{range $i, $v := .Layers}}…{{$v}}…{{end}} with index/key and value variables
 *   {{if .Field}}…{{else}}…{{end}}             truthiness as in Go (empty string/list/map, 0, false, null are false)
 *   {{- and -}}                                trim the white space on that side, as in Go
 *
 * Anything else is rejected with a message naming the action, rather than silently printing something wrong.
 */
import { HoistError } from '../errors.ts';

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'value'; expr: Expr }
  | { kind: 'range'; expr: Expr; keyVar?: string; valueVar?: string; body: Node[]; elseBody: Node[] }
  | { kind: 'if'; expr: Expr; body: Node[]; elseBody: Node[] };

type Expr =
  | { kind: 'path'; base: 'dot' | string; fields: string[] }
  | { kind: 'call'; fn: 'json' | 'index' | 'len'; args: Expr[] }
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number };

interface Scope {
  dot: unknown;
  vars: Map<string, unknown>;
}

export function renderTemplate(template: string, data: unknown): string {
  const tokens = tokenize(template);
  let pos = 0;
  const parseList = (ends: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++]!;
      if (t.kind === 'text') { nodes.push({ kind: 'text', text: t.text }); continue; }
      const action = t.text;
      const word = action.split(/\s+/)[0]!;
      if (ends.includes(word)) return { nodes, end: word };
      if (word === 'range') {
        const m = /^range\s+(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(.+)$/.exec(action);
        if (!m) throw bad(action);
        const body = parseList(['end', 'else']);
        const elseBody = body.end === 'else' ? parseList(['end']).nodes : [];
        const [keyVar, valueVar] = m[2] ? [m[1], m[2]] : [undefined, m[1]];
        nodes.push({ kind: 'range', expr: parseExpr(m[3]!, action), keyVar, valueVar, body: body.nodes, elseBody });
      } else if (word === 'if') {
        const body = parseList(['end', 'else']);
        const elseBody = body.end === 'else' ? parseList(['end']).nodes : [];
        nodes.push({ kind: 'if', expr: parseExpr(action.slice(2).trim(), action), body: body.nodes, elseBody });
      } else if (word === 'end' || word === 'else') {
        throw new HoistError('BAD_TEMPLATE', `--format: unexpected {{${action}}}`, { exitCode: 2 });
      } else {
        nodes.push({ kind: 'value', expr: parseExpr(action, action) });
      }
    }
    if (ends.length) throw new HoistError('BAD_TEMPLATE', `--format: missing {{end}}`, { exitCode: 2 });
    return { nodes, end: '' };
  };
  const nodes = parseList([]).nodes;
  return exec(nodes, { dot: data, vars: new Map([['$', data]]) });
}

function bad(action: string): HoistError {
  return new HoistError('BAD_TEMPLATE', `--format: unsupported template action {{${action}}}; supported: {{.Field}}, {{json .X}}, {{index .X "k"}}, {{len .X}}, {{range}}, {{if}}`, { exitCode: 2 });
}

function tokenize(s: string): ({ kind: 'text'; text: string } | { kind: 'action'; text: string })[] {
  const out: ({ kind: 'text'; text: string } | { kind: 'action'; text: string })[] = [];
  let i = 0;
  let trimNext = false;
  while (i < s.length) {
    const open = s.indexOf('{{', i);
    let text = open < 0 ? s.slice(i) : s.slice(i, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open < 0) { if (text) out.push({ kind: 'text', text }); break; }
    const close = s.indexOf('}}', open + 2);
    if (close < 0) throw new HoistError('BAD_TEMPLATE', `--format: unclosed action at offset ${open}`, { exitCode: 2 });
    let inner = s.slice(open + 2, close);
    if (inner.startsWith('- ')) { text = text.replace(/\s+$/, ''); inner = inner.slice(1); }
    trimNext = inner.endsWith(' -');
    if (trimNext) inner = inner.slice(0, -1);
    if (text) out.push({ kind: 'text', text });
    out.push({ kind: 'action', text: inner.trim() });
    i = close + 2;
  }
  return out;
}

function parseExpr(src: string, action: string): Expr {
  const words = splitWords(src);
  if (words.length === 0) throw bad(action);
  const first = words[0]!;
  if (first === 'json' || first === 'index' || first === 'len') {
    return { kind: 'call', fn: first, args: words.slice(1).map((w) => parseOperand(w, action)) };
  }
  if (words.length !== 1) throw bad(action);
  return parseOperand(first, action);
}

function parseOperand(w: string, action: string): Expr {
  if (w.startsWith('"')) return { kind: 'string', value: JSON.parse(w) as string };
  if (/^-?\d+$/.test(w)) return { kind: 'number', value: Number(w) };
  if (w === '.') return { kind: 'path', base: 'dot', fields: [] };
  if (w.startsWith('.')) return { kind: 'path', base: 'dot', fields: w.slice(1).split('.') };
  if (w.startsWith('$')) {
    const [base, ...fields] = w.split('.');
    return { kind: 'path', base: base!, fields };
  }
  throw bad(action);
}

function splitWords(s: string): string[] {
  const out: string[] = [];
  const re = /"(?:[^"\\]|\\.)*"|[^\s]+/g;
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[0]);
  return out;
}

function evalExpr(e: Expr, scope: Scope): unknown {
  switch (e.kind) {
    case 'string': case 'number': return e.value;
    case 'path': {
      let v: unknown = e.base === 'dot' ? scope.dot : scope.vars.get(e.base);
      if (e.base !== 'dot' && !scope.vars.has(e.base)) throw new HoistError('BAD_TEMPLATE', `--format: undefined variable ${e.base}`, { exitCode: 2 });
      for (const f of e.fields) {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) {
          throw new HoistError('BAD_TEMPLATE', `--format: can't evaluate field ${f} in a non-object value`, { exitCode: 2 });
        }
        v = (v as Record<string, unknown>)[f];
      }
      return v;
    }
    case 'call': {
      const args = e.args.map((a) => evalExpr(a, scope));
      if (e.fn === 'json') return { __raw: JSON.stringify(goMapOrder(args[0] ?? null)) };
      if (e.fn === 'len') {
        const v = args[0];
        if (Array.isArray(v) || typeof v === 'string') return v.length;
        if (v && typeof v === 'object') return Object.keys(v).length;
        return 0;
      }
      let v = args[0];
      for (const k of args.slice(1)) {
        if (v === null || v === undefined) return undefined;
        v = Array.isArray(v) ? v[Number(k)] : (v as Record<string, unknown>)[String(k)];
      }
      return v;
    }
  }
}

function exec(nodes: Node[], scope: Scope): string {
  let out = '';
  for (const n of nodes) {
    if (n.kind === 'text') out += n.text;
    else if (n.kind === 'value') out += show(evalExpr(n.expr, scope));
    else if (n.kind === 'if') out += exec(truthy(evalExpr(n.expr, scope)) ? n.body : n.elseBody, scope);
    else {
      const v = evalExpr(n.expr, scope);
      const entries: [unknown, unknown][] = Array.isArray(v)
        ? v.map((x, i) => [i, x])
        : v && typeof v === 'object' ? Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]) : [];
      if (entries.length === 0) { out += exec(n.elseBody, scope); continue; }
      for (const [k, x] of entries) {
        const vars = new Map(scope.vars);
        if (n.keyVar) vars.set(n.keyVar, k);
        if (n.valueVar) vars.set(n.valueVar, x);
        out += exec(n.body, { dot: x, vars });
      }
    }
  }
  return out;
}

/**
 * Go marshals maps with sorted keys and structs in field order. Inspect's structs have capitalized keys
 * (Name, Digest, …); an object with any other key is a map (Labels, Annotations) and gets sorted.
 */
function goMapOrder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(goMapOrder);
  if (v === null || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  const isStruct = keys.every((k) => /^[A-Z]/.test(k));
  const ordered = isStruct ? keys : [...keys].sort();
  return Object.fromEntries(ordered.map((k) => [k, goMapOrder((v as Record<string, unknown>)[k])]));
}

function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** Prints like Go's fmt %v does for the JSON-shaped values inspect produces. */
function show(v: unknown): string {
  if (v && typeof v === 'object' && '__raw' in v) return (v as { __raw: string }).__raw;
  if (v === null || v === undefined) return '<no value>';
  if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
  if (typeof v === 'object') return `map[${Object.keys(v).sort().map((k) => `${k}:${show((v as Record<string, unknown>)[k])}`).join(' ')}]`;
  return String(v);
}
