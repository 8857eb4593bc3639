/**
 * `gpt-engine plot RUN_DIR_OR_METRICS... [--out loss.svg|.html]`: training
 * curves (train and validation loss against steps and tokens, learning rate
 * below), several runs overlaid with a legend.
 */
import { Command } from 'commander';
import * as path from 'node:path';
import { plotRuns } from '../../lib/plot';
import { log, printJson } from '../cli-util';

export function register(program: Command): void {
  program
    .command('plot')
    .description('Plot training curves (loss vs steps and tokens, learning rate) of one or more runs to SVG or HTML')
    .argument('<runs...>', 'run folders (with metrics.jsonl) or metrics.jsonl files')
    .option('--out <file>', 'output file: .svg or .html', 'loss.svg')
    .option('--json', 'one JSON document on stdout')
    .action(async (runs: string[], opts: { out: string; json?: boolean }) => {
      const out = path.resolve(opts.out);
      const r = await plotRuns(runs, out);
      if (opts.json) printJson(r);
      else {
        for (const s of r.runs)
          log(`${s.name}: ${s.points} points, last loss ${s.lastLoss?.toFixed(4) ?? '-'}, last val loss ${s.lastValLoss?.toFixed(4) ?? '-'}`);
        log(`wrote ${r.out}`);
      }
    });
}
