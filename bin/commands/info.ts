/**
 * `gpt-engine info`: the doctor. Version, backends compiled in, the CPU's
 * instruction-set path, threads, GPUs found (or why none), and a tiny
 * computation on each backend with pass/fail.
 */
import { Command } from 'commander';
import * as os from 'node:os';
import { collectInfo } from '../../lib/info';
import { log, printJson } from '../cli-util';

export function register(program: Command): void {
  program
    .command('info')
    .description('Show the build, the CPU path, threads and GPUs, and run a tiny check on each backend')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: { json?: boolean }) => {
      const info = await collectInfo();
      if (opts.json) {
        printJson(info);
      } else {
        const lines = [
          `gpt-engine ${info.version} (Node ${process.version}, ${process.platform}-${process.arch})`,
          `addon:      ${info.addon.loaded ? info.addon.path : `not loaded: ${info.addon.error}`}`,
          `backends:   cpu${info.cuda.compiled ? ', cuda (compiled in)' : ' (CUDA not compiled in)'}`,
          `cpu:        ${info.cpu.model} (${os.cpus().length} logical CPUs)`,
          `isa path:   ${info.cpu.isa} (supported: ${info.cpu.supportedIsas.join(', ')}; avx512_bf16: ${info.cpu.avx512bf16 ? 'yes' : 'no'})`,
          `threads:    ${info.threads}`,
          `gpu:        ${info.cuda.emulated ? `none: device "cuda" is the ${info.cuda.name}, running the CUDA kernels emulated on the CPU (a GPT_ENGINE_CUDA_EMU build, for testing)` : info.cuda.available ? `${info.cuda.name}, ${(info.cuda.totalMemory / 2 ** 30).toFixed(1)} GiB, compute capability ${info.cuda.computeCapability}, driver ${info.cuda.driverVersion}` : `none (${info.cuda.reason})`}`,
          ...(info.gemm ? [`gemm:       ${info.gemm.gemm}`] : []),
          ...(info.distributed
            ? [
                `mpi:        ${info.distributed.mpi.available ? `${info.distributed.mpi.version} (CPU ranks: gpt-engine train --nproc N)` : `none (${info.distributed.mpi.reason})`}`,
                `nccl:       ${info.distributed.nccl.available ? `${info.distributed.nccl.version}` : `none (${info.distributed.nccl.reason})`}`,
              ]
            : []),
          ...info.checks.map((c) => `check ${c.backend.padEnd(5)} ${c.ok ? 'pass' : c.skipped ? 'skip' : 'FAIL'}  ${c.detail}`),
        ];
        process.stdout.write(lines.join('\n') + '\n');
        for (const w of info.warnings) log(`warning: ${w}`);
      }
      if (info.checks.some((c) => !c.ok && !c.skipped)) process.exitCode = 1;
    });
}
