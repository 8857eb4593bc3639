/**
 * worker.terminate() while the worker's model is in the middle of a native
 * call: the worker's environment is torn down while the call's completion is
 * still pending. The process must survive (it runs in a child process here,
 * so a crash fails this test instead of killing jest), and a fresh worker must
 * still train to the same numbers.
 */
import * as path from 'node:path';

import { describeExit, distFile, runNode } from '../helpers/child-util';

test('terminating workers in the middle of native calls leaves the process healthy', async () => {
  distFile('lib/model.js');
  const r = await runNode([path.join(__dirname, '..', 'helpers', 'child-terminate.js'), '8'], { timeoutMs: 90000 });
  if (r.code !== 0 || r.signal !== null) throw new Error(`the process did not survive: ${describeExit(r)}`);
  expect(r.stdout).toMatch(/^all ok /);
});
