/**
 * Input lists: files, folders (recursively, hidden entries skipped) and globs
 * (*, ?, [...], **) expanded to a sorted, de-duplicated list of files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentRangeError, BadFileError } from '../errors';
import { describe } from '../validate';

const GLOB_CHARS = /[*?[]/;

function globToRegExp(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = seg.slice(i + 1, end);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += '[' + cls.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

function listFilesRecursive(dir: string, out: string[]): void {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) listFilesRecursive(p, out);
    else if (e.isFile()) out.push(p);
    else if (e.isSymbolicLink()) {
      try {
        const st = fs.statSync(p);
        if (st.isFile()) out.push(p);
        else if (st.isDirectory()) listFilesRecursive(p, out);
      } catch {
        /* dangling link: skipped */
      }
    }
  }
}

function expandGlob(pattern: string): string[] {
  const abs = path.resolve(pattern);
  const parts = abs.split(path.sep);
  let bases = [parts[0] === '' ? path.sep : parts[0] + path.sep];
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i];
    if (!seg) continue;
    const next: string[] = [];
    if (seg === '**') {
      for (const b of bases) {
        const stack = [b];
        while (stack.length) {
          const d = stack.pop()!;
          next.push(d);
          let ents: fs.Dirent[] = [];
          try {
            ents = fs.readdirSync(d, { withFileTypes: true });
          } catch {
            continue;
          }
          for (const e of ents) if (e.isDirectory() && !e.name.startsWith('.')) stack.push(path.join(d, e.name));
        }
      }
    } else if (GLOB_CHARS.test(seg)) {
      const re = globToRegExp(seg);
      for (const b of bases) {
        let names: string[] = [];
        try {
          names = fs.readdirSync(b);
        } catch {
          continue;
        }
        for (const n of names) if (re.test(n) && (seg.startsWith('.') || !n.startsWith('.'))) next.push(path.join(b, n));
      }
    } else {
      for (const b of bases) {
        const p = path.join(b, seg);
        if (fs.existsSync(p)) next.push(p);
      }
    }
    bases = next;
  }
  return bases;
}

/** Files, folders (recursively, hidden entries skipped) and globs to a sorted, de-duplicated file list. */
export function expandInputs(inputs: string[]): string[] {
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new ArgumentRangeError('Expected at least one input file, folder or glob for inputs but received none');
  const files: string[] = [];
  for (const input of inputs) {
    if (typeof input !== 'string' || !input) throw new ArgumentRangeError(`Expected a path or glob for input but received ${describe(input)}`);
    if (fs.existsSync(input)) {
      const st = fs.statSync(input);
      if (st.isDirectory()) {
        const found: string[] = [];
        listFilesRecursive(input, found);
        if (!found.length) throw new BadFileError(`The input folder ${input} holds no files`);
        files.push(...found);
      } else files.push(input);
    } else if (GLOB_CHARS.test(input)) {
      const matches: string[] = [];
      for (const m of expandGlob(input)) {
        const st = fs.statSync(m);
        if (st.isFile()) matches.push(m);
        else if (st.isDirectory()) listFilesRecursive(m, matches);
      }
      if (!matches.length) throw new BadFileError(`No files match ${input}`);
      files.push(...matches.sort());
    } else {
      throw new BadFileError(`Missing input ${input}: no such file or folder`);
    }
  }
  const seen = new Set<string>();
  return files.filter((f) => {
    const k = path.resolve(f);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
