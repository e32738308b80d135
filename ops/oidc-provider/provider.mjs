#!/usr/bin/env node
// A real OpenID Connect provider (the npm package oauth2-mock-server) on a loopback port,
// for Muster's single sign-on tests and for trying single sign-on by hand. Not for
// production: it signs whatever its token endpoint is asked for.
//
//   npm ci --prefix ops/oidc-provider        # once (ops/test.sh does it)
//   node ops/oidc-provider/provider.mjs [--port N] [--alg RS256|PS256|ES256|…]
//
// When it listens it prints one JSON line: {"issuer", "kid", "public_key_pem"}. Its
// discovery document is at <issuer>/.well-known/openid-configuration, its keys at
// <issuer>/jwks, its token endpoint at <issuer>/token.
//
// Tokens: POST <issuer>/token with grant_type=client_credentials and aud=<audience>. Two
// more form fields shape a token, for tests:
//   claims  a JSON object merged into the claims; a null value removes the claim
//   kid     the key id written in the header (the token is still signed with the current key)
//
// Commands, one JSON object a line on standard input, each answered with one JSON line:
//   {"op": "rotate"}  a new signing key; the old one stays in the JWKS  -> {"kid", "public_key_pem"}
//   {"op": "stats"}   -> {"jwks_requests": n, "discovery_requests": n}
// It stops when its standard input closes (the test that started it has ended), or on
// SIGTERM or SIGINT.

import { createPublicKey } from "node:crypto";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option("--port", "0"));
const alg = option("--alg", "RS256");

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);
let current = null;
let keyCount = 0;
const stats = { jwks_requests: 0, discovery_requests: 0 };

async function newKey() {
  keyCount += 1;
  const jwk = await issuer.keys.generate(alg, { kid: `muster-test-${keyCount}` });
  current = jwk.kid;
  const pem = createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" });
  return { kid: jwk.kid, public_key_pem: pem };
}

// Every token is signed with the newest key, as a provider does after rotating its keys.
const buildToken = issuer.buildToken.bind(issuer);
issuer.buildToken = (opts) => buildToken({ ...opts, kid: current });

service.on("beforeTokenSigning", (token, req) => {
  const body = req.body ?? {};
  if (typeof body.claims === "string" && body.claims !== "") {
    const claims = JSON.parse(body.claims);
    for (const [name, value] of Object.entries(claims)) {
      if (value === null) {
        delete token.payload[name];
      } else {
        token.payload[name] = value;
      }
    }
  }
  if (typeof body.kid === "string" && body.kid !== "") {
    token.header.kid = body.kid;
  }
});

const first = await newKey();
const server = createServer((req, res) => {
  const path = (req.url ?? "").split("?")[0];
  if (path === "/jwks") stats.jwks_requests += 1;
  if (path === "/.well-known/openid-configuration") stats.discovery_requests += 1;
  service.requestHandler(req, res);
});
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(port, "127.0.0.1", resolve);
});
issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(JSON.stringify({ issuer: issuer.url, ...first }));

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

async function run(line) {
  try {
    const command = JSON.parse(line);
    if (command.op === "rotate") return await newKey();
    if (command.op === "stats") return { ...stats };
    return { error: `unknown op ${JSON.stringify(command.op)}` };
  } catch (e) {
    return { error: String(e) };
  }
}

// Commands run one after another, so answers come in the order of the commands.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() === "") return;
  queue = queue.then(async () => console.log(JSON.stringify(await run(line))));
});
lines.on("close", () => queue.then(stop));
