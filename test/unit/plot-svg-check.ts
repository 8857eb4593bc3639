/**
 * Test helpers for the charts: an XML well-formedness check for SVG (tags
 * balanced, attributes quoted, entities valid), the text of every <text>
 * element (legend labels, titles, axis labels), and how many line paths a
 * chart draws. Charts are checked through the CLI built in dist/ (vega is
 * an ES module; ts-jest runs CommonJS), so the tests need `npm run build`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'bin', 'gpt-engine.js');

export function requireBuiltCli(): void {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before these tests`);
}

/** Runs the built CLI; returns status, stdout, stderr. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120000) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout, cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export { execFileSync };

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*$/;

function checkText(s: string, where: number): void {
  if (s.includes('<')) throw new Error(`raw '<' in text at ${where}`);
  const amp = /&([^;\s]*);?/g;
  let m: RegExpExecArray | null;
  while ((m = amp.exec(s))) {
    if (!/^(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+)$/.test(m[1]) || !m[0].endsWith(';'))
      throw new Error(`bad entity "${m[0]}" at ${where + m.index}`);
  }
}

/** Throws with the position of the first problem; returns the root element's name. */
export function assertWellFormedXml(xml: string): string {
  const stack: string[] = [];
  let root = '';
  let i = 0;
  let rootClosed = false;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt === -1 ? xml.length : lt);
    if (text.trim()) {
      if (!stack.length) throw new Error(`text outside the root element at ${i}`);
      checkText(text, i);
    }
    if (lt === -1) break;
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt);
      if (end < 0) throw new Error(`unclosed comment at ${lt}`);
      i = end + 3;
      continue;
    }
    if (xml.startsWith('<![CDATA[', lt)) {
      const end = xml.indexOf(']]>', lt);
      if (end < 0) throw new Error(`unclosed CDATA at ${lt}`);
      i = end + 3;
      continue;
    }
    if (xml.startsWith('<?', lt)) {
      const end = xml.indexOf('?>', lt);
      if (end < 0) throw new Error(`unclosed processing instruction at ${lt}`);
      i = end + 2;
      continue;
    }
    // a tag: scan to its '>' honouring quoted attribute values
    let j = lt + 1;
    let quote = '';
    while (j < xml.length) {
      const c = xml[j];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
      else if (c === '<') throw new Error(`'<' inside a tag at ${j}`);
      j++;
    }
    if (j >= xml.length) throw new Error(`unclosed tag at ${lt}`);
    const body = xml.slice(lt + 1, j);
    i = j + 1;
    if (body.startsWith('/')) {
      const name = body.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> at ${lt} closes <${open ?? 'nothing'}>`);
      if (!stack.length) rootClosed = true;
      continue;
    }
    const selfClosing = body.endsWith('/');
    const inner = selfClosing ? body.slice(0, -1) : body;
    const nameMatch = /^([^\s/>]+)/.exec(inner);
    if (!nameMatch || !NAME.test(nameMatch[1])) throw new Error(`bad tag name at ${lt}: <${body.slice(0, 20)}`);
    const name = nameMatch[1];
    // attributes: name="value" pairs, each name once
    const attrs = inner.slice(name.length);
    const seen = new Set<string>();
    const attrRe = /\s+([^\s=]+)\s*=\s*("[^"]*"|'[^']*')/y;
    let k = 0;
    while (k < attrs.length) {
      if (/^\s*$/.test(attrs.slice(k))) break;
      attrRe.lastIndex = k;
      const a = attrRe.exec(attrs);
      if (!a) throw new Error(`bad attribute in <${name}> at ${lt}: ${attrs.slice(k, k + 30)}`);
      if (!NAME.test(a[1])) throw new Error(`bad attribute name ${a[1]} at ${lt}`);
      if (seen.has(a[1])) throw new Error(`duplicate attribute ${a[1]} in <${name}> at ${lt}`);
      seen.add(a[1]);
      checkText(a[2].slice(1, -1), lt);
      k = attrRe.lastIndex;
    }
    if (!stack.length) {
      if (rootClosed) throw new Error(`second root element <${name}> at ${lt}`);
      root = name;
    }
    if (selfClosing) {
      if (!stack.length) rootClosed = true;
    } else stack.push(name);
  }
  if (stack.length) throw new Error(`unclosed <${stack[stack.length - 1]}>`);
  if (!root) throw new Error('no root element');
  return root;
}

function unescape(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&amp;/g, '&');
}

/** The contents of every <text> element (vega writes legend labels, titles and axis labels there). */
export function svgTexts(svg: string): string[] {
  const out: string[] = [];
  const re = /<text\b[^>]*>([\s\S]*?)<\/text>/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(svg))) out.push(unescape(m[1].replace(/<[^>]+>/g, '')));
  return out;
}

/** Number of <path> elements inside vega's mark groups of one kind ('line', or 'rect': vega draws bars as paths). */
function pathsInMarks(svg: string, mark: 'line' | 'rect'): number {
  let n = 0;
  const re = new RegExp(`<g class="mark-${mark} role-mark[^"]*"[^>]*>([\\s\\S]*?)</g>`, 'g');
  let m: RegExpExecArray | null;
  while ((m = re.exec(svg))) n += (m[1].match(/<path\b/g) ?? []).length;
  return n;
}

/** Number of line paths. */
export function linePaths(svg: string): number {
  return pathsInMarks(svg, 'line');
}

/** Number of bar rectangles. */
export function barMarks(svg: string): number {
  return pathsInMarks(svg, 'rect');
}
