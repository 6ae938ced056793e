// npm install hook. On Linux: use the prebuilt binary for this platform if
// the package ships one, else build from source (node-gyp-build decides).
// Elsewhere TOA does not exist, so there is nothing to build: lookup()
// reports the peer address, as documented.
const { spawnSync } = require('node:child_process');

if (process.platform !== 'linux') {
  console.log(`node-toa: no native addon on ${process.platform}; lookup() reports the peer address (source 'peer').`);
  process.exit(0);
}
const result = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { stdio: 'inherit' });
process.exit(result.status ?? 1);
