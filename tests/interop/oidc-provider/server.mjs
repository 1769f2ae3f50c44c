// @ts-check
// panva's oidc-provider (the certified library FranceConnect's platform is built on),
// configured with a FranceConnect+ profile and a ProSanteConnect profile, for the
// interoperability test tests/e2e/test_oidc_interop.py. Test only: loopback, throw-away
// keys, a username form without password.
//
//   node server.mjs <config.json>
//
// config.json: {"profiles": [{"name", "port", "acr", "clientAuthMethod", "client": {...},
// "users": {username: claims}}]}. One provider per profile, each on its own loopback
// port, issuer http://127.0.0.1:<port>. Prints "READY <name> <issuer>" per profile, then
// "READY" once all listen.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';

/** FranceConnect identity scopes, each releasing the claim of the same name. */
const FC_CLAIMS = [
  'given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry',
  'preferred_username',
];
const PSC_CLAIMS = ['SubjectNameID', 'preferred_username', 'given_name', 'family_name', 'SubjectRefPro'];

function signingKeys() {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return [
    { ...ec, kid: 'es256-1', alg: 'ES256', use: 'sig' },
    { ...rsa, kid: 'rs256-1', alg: 'RS256', use: 'sig' },
  ];
}

/** @param {string} s */
function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** @param {http.IncomingMessage} req */
async function formBody(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10000) throw new Error('body too large');
  }
  return new URLSearchParams(body);
}

function configuration(profile) {
  const fcp = profile.name === 'fcp';
  const claimNames = fcp ? FC_CLAIMS : PSC_CLAIMS;
  const claims = {
    acr: null, amr: null, auth_time: null, sid: null, openid: ['sub'],
    ...(fcp
      ? Object.fromEntries(FC_CLAIMS.map((c) => [c, [c]]))
      : { scope_all: PSC_CLAIMS }),
  };
  return {
    clients: [profile.client],
    clientAuthMethods: [profile.clientAuthMethod],
    acrValues: ['eidas1', 'eidas2', 'eidas3'],
    claims,
    scopes: ['openid', ...(fcp ? FC_CLAIMS : ['scope_all'])],
    cookies: { keys: [randomBytes(32).toString('hex')] },
    jwks: { keys: signingKeys() },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      encryption: { enabled: fcp },
      jwtUserinfo: { enabled: fcp },
      introspection: { enabled: !fcp },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: { AccessToken: 60, AuthorizationCode: 30, IdToken: 60 },
    async findAccount(ctx, sub) {
      const user = profile.users[sub];
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          const released = Object.fromEntries(
            Object.entries(user).filter(([name]) => claimNames.includes(name)),
          );
          return { sub, ...released };
        },
      };
    },
  };
}

function loginPage(uid, title, error) {
  return `<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label>Identifiant <input name="username" autofocus></label>
<button type="submit">Se connecter</button></form></body></html>`;
}

function start(profile) {
  const issuer = `http://${HOST}:${profile.port}`;
  const provider = new Provider(issuer, configuration(profile));
  const title = profile.name === 'fcp' ? 'FranceConnect+ (oidc-provider)' : 'ProSantéConnect (oidc-provider)';
  const callback = provider.callback();

  /** @type {http.RequestListener} */
  async function interactions(req, res) {
    const url = new URL(req.url ?? '/', issuer);
    const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!match) return callback(req, res);
    res.setHeader('cache-control', 'no-store');
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'consent') {
      // The relying party is first party here: every asked scope and claim is granted.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session?.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, {
        mergeWithLastSubmission: true,
      });
    }
    if (req.method === 'GET') {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      return res.end(loginPage(details.uid, title));
    }
    const form = await formBody(req);
    const username = form.get('username') ?? '';
    if (!Object.hasOwn(profile.users, username)) {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      return res.end(loginPage(details.uid, title, 'Identifiant inconnu.'));
    }
    return provider.interactionFinished(req, res, {
      login: { accountId: username, acr: profile.acr, amr: profile.acr === 'eidas1' ? ['pwd'] : ['pwd', 'mfa'] },
    }, { mergeWithLastSubmission: false });
  }

  const server = http.createServer((req, res) => {
    interactions(req, res).catch((err) => {
      console.error(`${profile.name}: ${err}`);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  });
  return new Promise((resolve) => {
    server.listen(profile.port, HOST, () => {
      console.log(`READY ${profile.name} ${issuer}`);
      resolve(server);
    });
  });
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf-8'));
await Promise.all(config.profiles.map(start));
console.log('READY');
