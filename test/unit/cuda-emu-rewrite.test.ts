/**
 * The SIMT emulator's build-time rewrite (tools/cuda-emu/rewrite.js):
 * launches (template kernels, several lines), extern and static __shared__,
 * comments left alone, line numbers kept; and every CUDA source of the
 * backend goes through it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { rewrite } = require('../../tools/cuda-emu/rewrite.js') as { rewrite(src: string, file: string): string };

const body = (out: string) => out.slice(out.indexOf('\n') + 1);

describe('cuda-emu rewrite', () => {
  test('a multi-line launch of a template kernel keeps its lines and arguments', () => {
    const src = 'void f() {\n  k<A, B<2>>\n    <<<dim3(g, 2),\n      block, smem, s>>>(x,\n  y + 1);\n}\n';
    const out = body(rewrite(src, 'a.cu'));
    expect(out).toBe(
      'void f() {\n  (::gpt_emu::Launcher<k<A, B<2>>>(dim3(g, 2), block, smem, s))\n\n(x,\n  y + 1);\n}\n',
    );
    expect(out.split('\n').length).toBe(src.split('\n').length);
  });

  test('two- and three-value configurations, and launches inside comments stay as they are', () => {
    const src = '// k<<<1, 2>>>(x) in a comment\nadd_kernel<<<n, 256>>>(a); g<<<1, 1, 0>>>();\n';
    const out = body(rewrite(src, 'b.cu'));
    expect(out).toBe(
      '// k<<<1, 2>>>(x) in a comment\n(::gpt_emu::Launcher<add_kernel>(n, 256))(a); (::gpt_emu::Launcher<g>(1, 1, 0))();\n',
    );
  });

  test('extern __shared__ becomes the launch buffer; static __shared__ arrays get their guarded per-block home', () => {
    const src =
      '{\n  extern __shared__ __align__(16) unsigned char smem_raw[];\n  __shared__ float a[8][33], b[4];\n}\n';
    const out = body(rewrite(src, 'c.cu'));
    expect(out).toContain('unsigned char* smem_raw = reinterpret_cast<unsigned char*>(::gpt_emu::dynamic_smem());');
    // The storage is renamed; the kernel's names bind to the block's guarded
    // copy (poisoned at the block's first use, ending at an inaccessible page).
    expect(out).toContain('static thread_local float gpt_emu_shared_a[8][33], gpt_emu_shared_b[4]; ' +
      'auto& a = ::gpt_emu::shared_array(gpt_emu_shared_a, "a"); ' +
      'auto& b = ::gpt_emu::shared_array(gpt_emu_shared_b, "b");');
    expect(out.split('\n').length).toBe(src.split('\n').length);
  });

  test('a #line directive names the original file', () => {
    expect(rewrite('int x;\n', '/src/native/cuda/x.cu').split('\n')[0]).toBe('#line 1 "/src/native/cuda/x.cu"');
  });

  test('a launch without its argument list is an error naming the line', () => {
    expect(() => rewrite('\n\nk<<<1, 2>>>;\n', 'd.cu')).toThrow(/d\.cu:3: .*expected \( after >>>/);
  });

  test('every CUDA source of the backend rewrites, with its line count kept', () => {
    const dir = path.join(__dirname, '..', '..', 'native', 'cuda');
    const files = fs.readdirSync(dir).filter((f) => /\.(cu|cuh)$/.test(f) && !f.endsWith('_sm90a.cu'));
    expect(files.length).toBeGreaterThan(10);
    let launches = 0;
    for (const f of files) {
      const src = fs.readFileSync(path.join(dir, f), 'utf8');
      const out = body(rewrite(src, f));
      expect(out.split('\n').length).toBe(src.split('\n').length);
      expect(out).not.toMatch(/<<<|>>>/);
      launches += (out.match(/::gpt_emu::Launcher</g) || []).length;
    }
    expect(launches).toBeGreaterThanOrEqual(20);
  });
});
