// The benchmark anchor: node-oidc-provider 9.x configured as a production
// deployment would be, on 127.0.0.1, one process.
//
// - ES256 signing key generated at start (ID tokens and JWT access tokens);
// - client_credentials issues RFC 9068 JWT access tokens (resource indicator
//   resolved by default to the bench API, accessTokenFormat 'jwt');
// - authorization code flow with a real login (email + password, argon2id
//   hash verified per login) and a consent step, driven over plain HTTP forms;
// - refresh tokens rotated on every use (each refresh token is single-use);
// - token introspection and userinfo enabled, devInteractions off;
// - signed cookies, explicit TTLs, NODE_ENV=production expected.
//
// State lives in oidc-provider's bundled in-memory adapter, or, with
// ANCHOR_DATABASE_URL, in PostgreSQL (pg_adapter.js): the in-memory adapter is
// development-only by oidc-provider's own account, and idp's state is durable.
//
// Environment:
//   ANCHOR_PORT (default 9400), ANCHOR_HOST (127.0.0.1)
//   ANCHOR_CLIENT_ID, ANCHOR_CLIENT_SECRET, ANCHOR_REDIRECT_URI
//   ANCHOR_EMAIL, ANCHOR_PASSWORD       the test account
//   ANCHOR_ACCOUNTS                     extra accounts user<i>@bench.test (same password)
//   ANCHOR_ARGON2_M (KiB), ANCHOR_ARGON2_T, ANCHOR_ARGON2_P   argon2id parameters
//   ANCHOR_DATABASE_URL                 postgresql://... : the PostgreSQL adapter

import * as crypto from 'node:crypto';

import argon2 from 'argon2';
import { Provider, errors } from 'oidc-provider';

import { pgAdapter } from './pg_adapter.js';

const env = process.env;
const HOST = env.ANCHOR_HOST || '127.0.0.1';
const PORT = Number(env.ANCHOR_PORT || 9400);
const ISSUER = `http://${HOST}:${PORT}`;
const API_RESOURCE = `${ISSUER}/api`;

const CLIENT_ID = env.ANCHOR_CLIENT_ID || 'bench-client';
const CLIENT_SECRET = env.ANCHOR_CLIENT_SECRET || 'bench-secret-0123456789abcdef0123456789abcdef';
const REDIRECT_URI = env.ANCHOR_REDIRECT_URI || 'http://127.0.0.1:9/cb';
const EMAIL = (env.ANCHOR_EMAIL || 'bench@example.test').toLowerCase();
const PASSWORD = env.ANCHOR_PASSWORD || 'correct horse battery staple';
const EXTRA_ACCOUNTS = Number(env.ANCHOR_ACCOUNTS || 0);
const ARGON2 = {
  type: argon2.argon2id,
  memoryCost: Number(env.ANCHOR_ARGON2_M || 19456),
  timeCost: Number(env.ANCHOR_ARGON2_T || 2),
  parallelism: Number(env.ANCHOR_ARGON2_P || 1),
};

// ---------------------------------------------------------------- accounts

const accountsByEmail = new Map();
const accountsById = new Map();

async function seedAccounts() {
  // One hash computed at start; every account stores it (the per-login cost,
  // one argon2id verify, is what matters, not how the hashes were made).
  const hash = await argon2.hash(PASSWORD, ARGON2);
  const add = (email, name) => {
    const account = { id: crypto.randomUUID(), email, name, hash };
    accountsByEmail.set(email, account);
    accountsById.set(account.id, account);
  };
  add(EMAIL, 'Bench User');
  for (let i = 0; i < EXTRA_ACCOUNTS; i += 1) add(`user${i}@bench.test`, `User ${i}`);
}

async function findAccount(ctx, id) {
  const account = accountsById.get(id);
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: account.email,
        email_verified: true,
        name: account.name,
      };
    },
  };
}

// ---------------------------------------------------------------- keys

function es256Key() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const thumb = crypto.createHash('sha256')
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
    .digest('base64url');
  return { ...jwk, kid: thumb.slice(0, 16), use: 'sig', alg: 'ES256' };
}

// ---------------------------------------------------------------- provider

const configuration = {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    client_name: 'Bench RP',
    redirect_uris: [REDIRECT_URI],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [es256Key()] },
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  cookies: {
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // confidential clients may introspect any token (resource-server style)
      async allowedPolicy(ctx, client) { return client.clientAuthMethod !== 'none'; },
    },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // client_credentials without `resource` gets the bench API as audience;
      // authorization code / refresh exchanges keep the userinfo audience.
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf;
        if (ctx.oidc.route === 'token' && ctx.oidc.params.grant_type === 'client_credentials') {
          return API_RESOURCE;
        }
        return undefined;
      },
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'api:read api:write',
          audience: API_RESOURCE,
          accessTokenTTL: 10 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
      async useGrantedResource() { return false; },
    },
  },
  // every refresh token is single-use: each exchange returns a new one
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    ClientCredentials: 10 * 60,
    IdToken: 60 * 60,
    Interaction: 10 * 60,
    RefreshToken: 14 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
  interactions: {
    url(ctx, interaction) { return `/interaction/${interaction.uid}`; },
  },
  routes: {
    authorization: '/authorize',
    end_session: '/end-session',
    introspection: '/introspect',
    jwks: '/jwks.json',
    revocation: '/revoke',
    token: '/token',
    userinfo: '/userinfo',
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Error</title><h1>Error</h1><pre>${escapeHtml(JSON.stringify(out))}</pre>`;
  },
};

// ---------------------------------------------------------------- interactions

const CSRF_KEY = crypto.randomBytes(32);
const csrfFor = (uid) => crypto.createHmac('sha256', CSRF_KEY).update(uid).digest('base64url');
const csrfOk = (uid, value) => {
  const expected = Buffer.from(csrfFor(uid));
  const got = Buffer.from(String(value || ''));
  return got.length === expected.length && crypto.timingSafeEqual(got, expected);
};

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><main><h1>${escapeHtml(title)}</h1>
${body}
</main></body></html>`;
}

function loginPage(uid, clientName, error) {
  return page('Sign in', `${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<p>to continue to ${escapeHtml(clientName)}</p>
<form method="post" action="/interaction/${uid}/login">
<input type="hidden" name="csrf" value="${csrfFor(uid)}">
<label for="email">Email</label> <input id="email" type="email" name="email" autocomplete="username" required>
<label for="password">Password</label> <input id="password" type="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(uid, clientName, scopes) {
  return page('Authorize', `<p>${escapeHtml(clientName)} asks for: ${scopes.map(escapeHtml).join(', ')}</p>
<form method="post" action="/interaction/${uid}/confirm">
<input type="hidden" name="csrf" value="${csrfFor(uid)}">
<button type="submit" name="decision" value="allow">Allow</button>
</form>`);
}

const MAX_FORM = 16 * 1024;
async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM) throw new errors.InvalidRequest('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function html(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'html';
  ctx.set('cache-control', 'no-store');
  ctx.body = body;
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/;

function interactions(provider) {
  return async function interactionRoutes(ctx, next) {
    const m = INTERACTION.exec(ctx.path);
    if (!m) return next();
    const [, uid, action] = m;
    try {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
      const { prompt, params } = details;
      const client = await provider.Client.find(params.client_id);
      const clientName = client?.clientName || params.client_id;

      if (ctx.method === 'GET' && !action) {
        if (prompt.name === 'login') return html(ctx, 200, loginPage(uid, clientName));
        if (prompt.name === 'consent') {
          const scopes = [...(prompt.details.missingOIDCScope || [])];
          return html(ctx, 200, consentPage(uid, clientName, scopes));
        }
        return html(ctx, 400, page('Error', `<p>unsupported prompt ${escapeHtml(prompt.name)}</p>`));
      }
      if (ctx.method !== 'POST' || !action) return html(ctx, 405, page('Error', '<p>method not allowed</p>'));

      const form = await readForm(ctx.req);
      if (!csrfOk(uid, form.get('csrf'))) return html(ctx, 403, page('Error', '<p>invalid form token</p>'));

      if (action === 'login') {
        if (prompt.name !== 'login') return html(ctx, 400, page('Error', '<p>no login expected</p>'));
        const account = accountsByEmail.get(String(form.get('email') || '').trim().toLowerCase());
        const password = String(form.get('password') || '');
        // verify against a real hash even for unknown emails (constant work)
        const ok = await argon2.verify(account ? account.hash : dummyHash, password) && !!account;
        if (!ok) return html(ctx, 200, loginPage(uid, clientName, 'Wrong email or password.'));
        ctx.respond = false;
        return provider.interactionFinished(ctx.req, ctx.res, {
          login: { accountId: account.id, amr: ['pwd'], remember: false },
        }, { mergeWithLastSubmission: false });
      }

      // confirm (consent)
      if (prompt.name !== 'consent') return html(ctx, 400, page('Error', '<p>no consent expected</p>'));
      const { details: missing } = prompt;
      let grant;
      if (details.grantId) {
        grant = await provider.Grant.find(details.grantId);
      } else {
        grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      }
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();
      ctx.respond = false;
      return provider.interactionFinished(ctx.req, ctx.res, {
        consent: details.grantId ? {} : { grantId },
      }, { mergeWithLastSubmission: true });
    } catch (err) {
      if (err instanceof errors.SessionNotFound || err instanceof errors.InvalidRequest) {
        return html(ctx, err.status || 400, page('Error', `<p>${escapeHtml(err.message)}</p>`));
      }
      throw err;
    }
  };
}

// ---------------------------------------------------------------- start

let dummyHash;

async function main() {
  await seedAccounts();
  dummyHash = await argon2.hash(crypto.randomBytes(16).toString('hex'), ARGON2);
  if (env.ANCHOR_DATABASE_URL) configuration.adapter = await pgAdapter(env.ANCHOR_DATABASE_URL);
  const provider = new Provider(ISSUER, configuration);
  provider.keys = [crypto.randomBytes(32).toString('base64url')];
  provider.proxy = false;
  provider.use(interactions(provider));
  const server = provider.listen(PORT, HOST, () => {
    process.stdout.write(`anchor listening on ${ISSUER} pid=${process.pid} `
      + `argon2id m=${ARGON2.memoryCost} t=${ARGON2.timeCost} p=${ARGON2.parallelism} `
      + `adapter=${env.ANCHOR_DATABASE_URL ? 'postgresql' : 'memory'}\n`);
  });
  server.keepAliveTimeout = 65_000;
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
