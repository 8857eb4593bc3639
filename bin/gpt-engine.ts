#!/usr/bin/env node
/**
 * The `gpt-engine` command. Each subcommand lives in bin/commands/<name>.ts and
 * exports `register(program)`; this file loads every one of them, so adding a
 * subcommand never means editing a central list.
 */
import { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fail } from './cli-util';

function version(): string {
  try {
    const pj = path.join(__dirname, '..', '..', 'package.json');
    const alt = path.join(__dirname, '..', 'package.json');
    const file = fs.existsSync(pj) ? pj : alt;
    return JSON.parse(fs.readFileSync(file, 'utf8')).version as string;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('gpt-engine')
    .description('Train, run and benchmark GPT-2/GPT-3 shaped models on CPUs and NVIDIA GPUs')
    .version(version())
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const dir = path.join(__dirname, 'commands');
  const files = fs
    .readdirSync(dir)
    .filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts') && !f.endsWith('.map'))
    .sort();
  const seen = new Set<string>();
  for (const f of files) {
    const base = f.replace(/\.(js|ts)$/, '');
    if (seen.has(base)) continue;
    seen.add(base);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(path.join(dir, f)) as { register?: (p: Command) => void };
    if (typeof mod.register === 'function') mod.register(program);
  }
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((e) => fail(e));
}
