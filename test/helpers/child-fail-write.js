// Preloaded (`node -r`) into a `gpt-engine train` child process by
// test/native/faults.test.ts to make one checkpoint write fail like a full
// disk. It installs the write-fault hook of the compiled package's
// safetensors writer (lib/safetensors.ts setWriteFaultHook, which every
// checkpoint file goes through), so no production code path changes.
//
// GPT_ENGINE_TEST_FAIL_WRITE = JSON { "dir": "step-3", "file": "optimizer.safetensors", "errno": "ENOSPC" }
// fails the first write of that file inside the temporary folder of that
// checkpoint, with an error shaped like Node's own (code, errno, syscall).
'use strict';
const path = require('node:path');
const os = require('node:os');

const spec = JSON.parse(process.env.GPT_ENGINE_TEST_FAIL_WRITE || 'null');
if (spec) {
  const st = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'safetensors.js'));
  const code = spec.errno || 'ENOSPC';
  const errno = os.constants.errno[code] || 28;
  let fired = false;
  st.setWriteFaultHook((file) => {
    if (fired) return;
    const folder = path.basename(path.dirname(file));
    // the checkpoint's temporary folder: .step-3.tmp-<pid>-<hex>
    if (!folder.startsWith(`.${spec.dir}.tmp-`) || path.basename(file) !== spec.file) return;
    fired = true;
    const what = { ENOSPC: 'no space left on device', EIO: 'i/o error', EDQUOT: 'disk quota exceeded' }[code] || 'write failed';
    const e = new Error(`${code}: ${what} (injected by test/helpers/child-fail-write.js), write`);
    e.code = code;
    e.errno = -errno;
    e.syscall = 'write';
    throw e;
  });
}
