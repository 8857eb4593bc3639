/**
 * worker.terminate() while the worker's model is decoding (generate() and
 * stream(), prefill and steps): the worker's environment is torn down while a
 * decode call's completion is pending. The process must survive (it runs in
 * a child process, so a crash fails this test instead of killing jest), and a
 * fresh worker must still generate the same tokens as the main thread.
 */
import * as path from 'node:path';

import { describeExit, distFile, runNode } from '../helpers/child-util';

test('terminating workers in the middle of generate() and stream() leaves the process healthy', async () => {
  distFile('lib/model.js');
  distFile('lib/generate.js');
  const r = await runNode([path.join(__dirname, '..', 'helpers', 'child-terminate-decode.js'), '8'], { timeoutMs: 90000 });
  if (r.code !== 0 || r.signal !== null) throw new Error(`the process did not survive: ${describeExit(r)}`);
  expect(r.stdout).toMatch(/^all ok: \d+ of 16 terminates during a decode call/);
});
