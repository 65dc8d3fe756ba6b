// idp.mjs runs panva's certified oidc-provider as the organisation's identity
// provider for the interop tests. The provider's code is used as published;
// this file only configures it: one confidential client (Gatehouse), a few
// people, a plain sign-in form a browser can fill in, consent given on the
// person's behalf (Gatehouse is a first-party client), RP-initiated logout,
// and signing keys the test can rotate.
//
//   node idp.mjs --port 9000 --admin-port 9001 \
//     --client-id gatehouse --client-secret s3cret \
//     [--accounts '{"pat":{"email":"pat@partner.example","email_verified":true,"name":"Pat"}}'] \
//     --redirect-uri http://127.0.0.1:8080/api/auth/callback \
//     --post-logout-redirect-uri http://127.0.0.1:8080/
//
// Every option may also come from the environment (IDP_PORT, IDP_ADMIN_PORT,
// IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_REDIRECT_URI,
// IDP_POST_LOGOUT_REDIRECT_URI). Once both ports listen it prints one JSON
// line to stdout: {"issuer", "admin", "kid"}. POST {admin}/rotate replaces
// the signing key with a new one (the old one leaves the JWKS at once, as
// when an IdP retires a key) and answers {"kid", "retired"}; sessions,
// grants and sign-ins in progress survive it.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.IDP_PORT },
    'admin-port': { type: 'string', default: process.env.IDP_ADMIN_PORT },
    'client-id': { type: 'string', default: process.env.IDP_CLIENT_ID ?? 'gatehouse' },
    'client-secret': { type: 'string', default: process.env.IDP_CLIENT_SECRET },
    'redirect-uri': { type: 'string', default: process.env.IDP_REDIRECT_URI },
    'post-logout-redirect-uri': { type: 'string', default: process.env.IDP_POST_LOGOUT_REDIRECT_URI },
    // JSON: username → claims, replacing the people below (a second
    // provider with other people and other claims).
    accounts: { type: 'string', default: process.env.IDP_ACCOUNTS },
  },
});
for (const name of ['port', 'admin-port', 'client-secret', 'redirect-uri', 'post-logout-redirect-uri']) {
  if (!opts[name]) {
    console.error(`idp.mjs: --${name} is required`);
    process.exit(2);
  }
}

const host = '127.0.0.1';
const issuer = `http://${host}:${opts.port}`;

// The people who can sign in, by username.
const accounts = opts.accounts ? JSON.parse(opts.accounts) : {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Admin' },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Builder' },
  carol: { email: 'carol@example.com', email_verified: true, name: 'Carol Clerk' },
  dave: { email: 'dave@example.com', email_verified: true, name: 'Dave Doe' },
};

const html = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${html(title)}</title></head>
<body><main><h1>${html(title)}</h1>
${body}
</main></body></html>`;
}

async function newSigningKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function newProvider(signingKey) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: opts['client-id'],
      client_secret: opts['client-secret'],
      redirect_uris: [opts['redirect-uri']],
      post_logout_redirect_uris: [opts['post-logout-redirect-uri']],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signingKey] },
    // A second factor: asked for with acr_values=urn:gatehouse:mfa, it
    // adds a one-time code to the sign-in, and the ID token says so in acr
    // and amr (step-up tests).
    acrValues: ['urn:gatehouse:mfa'],
    // Fixed, so the IdP's own cookies stay valid across a key rotation.
    cookies: { keys: ['interop-idp-cookie-key'] },
    claims: {
      // acr and amr ride with openid, so every ID token says how the person
      // signed in (as Entra and Keycloak do), not only when asked.
      openid: ['sub', 'acr', 'amr'],
      email: ['email', 'email_verified'],
      // groups and the other claims the sign-in rules read ride with the
      // profile (in userinfo, as many IdPs send them).
      profile: ['name', 'groups', 'employee_type'],
    },
    async findAccount(ctx, id) {
      const person = accounts[id];
      if (!person) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...person }; } };
    },
    interactions: {
      url(ctx, interaction) { return `/interaction/${interaction.uid}`; },
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out of the identity provider?', `${form}
<button id="confirm-logout" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="stay-signed-in" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out of the identity provider', '<p id="signed-out">You are signed out.</p>');
        },
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      const lines = Object.entries(out).map(([k, v]) => `<p class="idp-error"><strong>${html(k)}</strong>: ${html(v)}</p>`);
      ctx.body = page('Identity provider error', lines.join('\n'));
    },
  });
  for (const event of ['server_error', 'end_session.error', 'grant.error', 'authorization.error', 'userinfo.error']) {
    provider.on(event, (ctx, err) => console.error(`idp: ${event}: ${err?.message ?? ctx?.message} ${err?.error_description ?? ''}`));
  }
  return { provider, serve: provider.callback(), kid: signingKey.kid };
}

let current = newProvider(await newSigningKey());

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

// The one-time code every account's second factor accepts.
const otpCode = '123456';

function otpForm(uid, username, error) {
  return page('Enter your one-time code', `${error ? `<p id="login-error">${html(error)}</p>` : ''}
<form id="otp-form" method="post" action="/interaction/${html(uid)}/otp">
<input type="hidden" name="username" value="${html(username)}">
<label>Code <input id="otp" name="otp" autocomplete="one-time-code" autofocus></label>
<button id="verify" type="submit">Verify</button>
</form>`);
}

function loginForm(uid, error) {
  return page('Sign in to the identity provider', `${error ? `<p id="login-error">${html(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${html(uid)}/login">
<label>Username <input id="username" name="username" autocomplete="username" autofocus></label>
<button id="sign-in" type="submit">Sign in</button>
</form>`);
}

// interaction serves the provider's interaction URL: the sign-in form for a
// login prompt, and consent given at once for a consent prompt.
async function interaction(req, res) {
  const { provider } = current;
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  const wantsMFA = String(params.acr_values ?? '').split(' ').includes('urn:gatehouse:mfa');
  if (req.method === 'POST' && req.url.endsWith('/login')) {
    const username = ((await readForm(req)).get('username') ?? '').trim().toLowerCase();
    if (!accounts[username]) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginForm(uid, `No account named “${username}”.`));
      return;
    }
    if (wantsMFA) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(otpForm(uid, username));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: username, amr: ['pwd'] } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && req.url.endsWith('/otp')) {
    const form = await readForm(req);
    const username = (form.get('username') ?? '').trim().toLowerCase();
    if (!accounts[username] || form.get('otp') !== otpCode) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(otpForm(uid, username, 'That code is not right.'));
      return;
    }
    await provider.interactionFinished(req, res,
      { login: { accountId: username, acr: 'urn:gatehouse:mfa', amr: ['pwd', 'otp'] } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(uid));
    return;
  }
  // consent: Gatehouse is the organisation's own client, so the person is
  // not asked.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

const idp = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error('idp: interaction:', err);
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Identity provider error', `<p class="idp-error">${html(err.message)}</p>`));
    });
    return;
  }
  current.serve(req, res);
});

const admin = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/rotate') {
    const retired = current.kid;
    current = newProvider(await newSigningKey());
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: current.kid, retired }));
    return;
  }
  res.writeHead(404).end();
});

const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port), host, resolve);
});
await listen(idp, opts.port);
await listen(admin, opts['admin-port']);
process.stdout.write(`${JSON.stringify({ issuer, admin: `http://${host}:${opts['admin-port']}`, kid: current.kid })}\n`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => { idp.close(); admin.close(); process.exit(0); });
}
