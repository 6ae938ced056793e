// Builds dist/: TypeScript compiled once to CommonJS (dist/cjs), and thin ESM
// wrappers (dist/esm) that re-export it. One implementation for both module
// systems means one cache and one set of prototype getters, whichever way
// an application (or its dependencies) loads the package.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
// [ESM wrapper name, CommonJS module it re-exports]
const entries = [['index', 'index'], ['register', 'register'], ['bpf', 'bpf/index'], ['proxy-protocol', 'proxy-protocol/index'],
  ['fastify', 'fastify'], ['express', 'express'], ['koa', 'koa'], ['metrics', 'metrics']];

// Built beside dist/ and swapped in at the end: tests, the demo and QEMU
// guests may be loading dist/ meanwhile, and a compile takes a while.
const dist = join(root, 'dist');
const out = join(root, '.cache', `dist-build-${process.pid}`, 'dist');
rmSync(dirname(out), { recursive: true, force: true });
try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json'), '--outDir', join(out, 'cjs')], { stdio: 'inherit' });
  writeFileSync(join(out, 'cjs/package.json'), '{ "type": "commonjs" }\n');
  if (existsSync(join(out, 'cjs/cli.js'))) chmodSync(join(out, 'cjs/cli.js'), 0o755);
  writeEsmWrappers();
  const old = `${dist}.old-${process.pid}`;
  if (existsSync(dist)) renameSync(dist, old);
  renameSync(out, dist);
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(dirname(out), { recursive: true, force: true });
}

function writeEsmWrappers() {
  mkdirSync(join(out, 'esm'), { recursive: true });
  for (const [entry, target] of entries) {
    const cjsExports = require(join(out, 'cjs', `${target}.js`));
    const names = Object.keys(cjsExports).filter((n) => n !== '__esModule' && n !== 'default');
    // A module with its own `export default` (the framework plugins) keeps it
    // as the ESM default; the others' default is the whole module, as before.
    const ownDefault = cjsExports.__esModule && 'default' in cjsExports;
    const js = [
      `import cjs from '../cjs/${target}.js';`,
      names.length ? `export const { ${names.join(', ')} } = cjs;` : '',
      ownDefault ? 'export default cjs.default;' : 'export default cjs;',
      '',
    ].filter((line, i) => line || i === 3);
    writeFileSync(join(out, 'esm', `${entry}.js`), js.join('\n'));
    writeFileSync(join(out, 'esm', `${entry}.d.ts`), ownDefault
      ? `export * from '../cjs/${target}.js';\nexport { default } from '../cjs/${target}.js';\n`
      : `export * from '../cjs/${target}.js';\nimport * as cjs from '../cjs/${target}.js';\nexport default cjs;\n`);
  }
}
