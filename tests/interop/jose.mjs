// jose.mjs verifies Gatehouse's JWTs the way a backend written in JavaScript
// would: panva's `jose` with a remote JWK set (createRemoteJWKSet, with its
// default cache and 30 s cooldown). It keeps its key sets for as long as it
// runs, so a test can fetch a set, have Gatehouse rotate its keys, and verify
// what is signed afterwards with the set fetched before.
//
// One JSON request per stdin line, one JSON answer per stdout line:
//   {"op": "jwks", "set": name, "url": jwks_url}
//       create the remote set `name` (fetched on first use)
//   {"op": "discover", "set": name, "issuer": url}
//       read {issuer}/.well-known/openid-configuration, check its issuer and
//       create the remote set `name` from its jwks_uri
//       -> {"ok", "issuer", "jwks_uri"}
//   {"op": "verify", "set": name, "token", "issuer", "audience", "typ"}
//       jwtVerify -> {"ok", "header", "payload"}
// A failure answers {"ok": false, "code": jose's error code, "message"}.

import readline from 'node:readline';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const sets = new Map();

const ops = {
  async jwks(req) {
    sets.set(req.set, createRemoteJWKSet(new URL(req.url)));
    return {};
  },
  async discover(req) {
    const url = `${req.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, { headers: { accept: 'application/json' } });
    if (!res.ok) throw Object.assign(new Error(`GET ${url}: ${res.status}`), { code: 'DISCOVERY_FAILED' });
    const doc = await res.json();
    if (doc.issuer !== req.issuer) {
      throw Object.assign(new Error(`discovery issuer ${doc.issuer} is not ${req.issuer}`), { code: 'DISCOVERY_FAILED' });
    }
    sets.set(req.set, createRemoteJWKSet(new URL(doc.jwks_uri)));
    return { issuer: doc.issuer, jwks_uri: doc.jwks_uri };
  },
  async verify(req) {
    const set = sets.get(req.set);
    if (!set) throw new Error(`no key set named ${req.set}`);
    const { payload, protectedHeader } = await jwtVerify(req.token, set, {
      issuer: req.issuer,
      audience: req.audience,
      typ: req.typ,
    });
    return { header: protectedHeader, payload };
  },
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const req = JSON.parse(line);
    const op = ops[req.op];
    if (!op) throw new Error(`unknown op ${req.op}`);
    answer = { ok: true, ...(await op(req)) };
  } catch (err) {
    answer = { ok: false, code: err?.code ?? null, message: err?.message ?? String(err) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
