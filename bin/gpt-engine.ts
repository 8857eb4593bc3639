#!/usr/bin/env node
/**
 * The `gpt-engine` command. Each subcommand lives in bin/commands/<name>.ts
 * and exports `register(program)`; COMMANDS below is the list of them, in
 * the order `--help` shows them.
 */
import { Command } from 'commander';
import { packageVersion } from '../lib/info';
import { fail } from './cli-util';
import * as bench from './commands/bench';
import * as evalCommand from './commands/eval';
import * as generate from './commands/generate';
import * as info from './commands/info';
import * as params from './commands/params';
import * as plot from './commands/plot';
import * as prepare from './commands/prepare';
import * as serveCommand from './commands/serve';
import * as train from './commands/train';

/** Every subcommand: the workflow first (data, training, evaluation, generation, charts), then the tools. */
const COMMANDS: readonly { register(program: Command): void }[] = [
  prepare,
  train,
  evalCommand,
  generate,
  serveCommand,
  plot,
  params,
  bench,
  info,
];

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('gpt-engine')
    .description('Train, run and benchmark GPT-2/GPT-3 shaped models on CPUs and NVIDIA GPUs')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const command of COMMANDS) command.register(program);
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((e) => fail(e));
}
