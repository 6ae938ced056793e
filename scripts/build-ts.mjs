// Builds dist/: TypeScript compiled once to CommonJS (dist/cjs), and thin ESM
// wrappers (dist/esm) that re-export it. One implementation for both module
// systems means one cache and one set of prototype getters, whichever way
// an application (or its dependencies) loads the package.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
// [ESM wrapper name, CommonJS module it re-exports]
const entries = [['index', 'index'], ['register', 'register'], ['bpf', 'bpf/index'], ['proxy-protocol', 'proxy-protocol/index'],
  ['fastify', 'fastify'], ['express', 'express'], ['koa', 'koa'], ['metrics', 'metrics']];

rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
writeFileSync(join(root, 'dist/cjs/package.json'), '{ "type": "commonjs" }\n');
if (existsSync(join(root, 'dist/cjs/cli.js'))) chmodSync(join(root, 'dist/cjs/cli.js'), 0o755);

mkdirSync(join(root, 'dist/esm'), { recursive: true });
for (const [entry, target] of entries) {
  const cjsExports = require(join(root, 'dist/cjs', `${target}.js`));
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
  writeFileSync(join(root, 'dist/esm', `${entry}.js`), js.join('\n'));
  writeFileSync(join(root, 'dist/esm', `${entry}.d.ts`), ownDefault
    ? `export * from '../cjs/${target}.js';\nexport { default } from '../cjs/${target}.js';\n`
    : `export * from '../cjs/${target}.js';\nimport * as cjs from '../cjs/${target}.js';\nexport default cjs;\n`);
}
