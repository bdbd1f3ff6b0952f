// Raw RSA-2048 PKCS#1 v1.5 / SHA-256 signs per second through Node's crypto (OpenSSL), for context
// next to the peer's tokens/s: the peer's own ceiling on this machine. Prints one JSON object.
// Usage: node sign_ceiling.js [seconds]
import { generateKeyPairSync, sign } from 'node:crypto';

const seconds = Number(process.argv[2] || '3');
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const input = Buffer.from('eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.' + 'e'.repeat(280));

const warmEnd = performance.now() + Math.min(200, seconds * 100);
while (performance.now() < warmEnd) sign('sha256', input, privateKey);

let n = 0;
const start = performance.now();
const deadline = start + seconds * 1000;
let now = start;
while (now < deadline) {
  for (let i = 0; i < 16; i += 1) sign('sha256', input, privateKey);
  n += 16;
  now = performance.now();
}
const elapsed = (now - start) / 1000;
console.log(JSON.stringify({
  node: process.version,
  openssl: process.versions.openssl,
  rsa2048_sign: { ops: n, seconds: Number(elapsed.toFixed(3)), per_s: Number((n / elapsed).toFixed(1)) },
}));
