// bench/webhooks.py's peer: supabase stripe-sync-engine behind a small HTTP server.
//
//   PEER_PORT=8123 PEER_DATABASE_URL=postgres://... PEER_WEBHOOK_SECRET=whsec_... node server.js
//
// On start it runs the package's own migrations (schema "stripe") in PEER_DATABASE_URL, then
// serves GET /healthz and POST /webhooks/stripe: the raw body and the Stripe-Signature header go to
// StripeSync.processWebhook, which verifies the signature and upserts the object into its table.
// 200 once applied, 400 for a bad signature, 500 otherwise (the package throws on event types it
// does not handle, which Stripe would retry).
//
// The package can call the Stripe API (revalidateObjectsViaStripeApi, autoExpandLists,
// backfillRelatedEntities); all three are left off, so it trusts the webhook payload as paywall
// does. One call has no such switch: after checkout.session.completed it always lists the session's
// line items (GET /v1/checkout/sessions/:id/line_items). Its Stripe client is therefore pointed at
// a stand-in served by this same process on another loopback port, which answers that list empty
// and anything else 404; every call to it is counted at GET /stats (stripeApiCalls), and its cost
// lands in this process's CPU, i.e. on the peer's side of the comparison.
'use strict';

const http = require('node:http');
const Stripe = require('stripe');
const { StripeSync, runMigrations } = require('@supabase/stripe-sync-engine');

const port = Number(process.env.PEER_PORT || 8123);
const databaseUrl = process.env.PEER_DATABASE_URL;
const webhookSecret = process.env.PEER_WEBHOOK_SECRET;
const poolMax = Number(process.env.PEER_POOL_MAX || 10);
if (!databaseUrl || !webhookSecret) {
  console.error('PEER_DATABASE_URL and PEER_WEBHOOK_SECRET are required');
  process.exit(2);
}

const stats = { applied: 0, rejected: 0, failed: 0, stripeApiCalls: 0, unexpectedStripeApiCalls: [], lastError: null };

function stripeStandIn() {
  // Listens on a free loopback port; resolves with it.
  const server = http.createServer((req, res) => {
    stats.stripeApiCalls += 1;
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && /^\/v1\/checkout\/sessions\/[^/]+\/line_items$/.test(path)) {
      return answer(res, 200, { object: 'list', data: [], has_more: false, url: path });
    }
    stats.unexpectedStripeApiCalls.push(`${req.method} ${path}`);
    return answer(res, 404, { error: { type: 'invalid_request_error', message: 'bench stand-in' } });
  });
  server.keepAliveTimeout = 60000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function main() {
  await runMigrations({ databaseUrl, schema: 'stripe' });
  const sync = new StripeSync({
    poolConfig: { connectionString: databaseUrl, max: poolMax },
    schema: 'stripe',
    stripeSecretKey: 'sk_test_bench_peer',
    stripeWebhookSecret: webhookSecret,
    revalidateObjectsViaStripeApi: [],
    autoExpandLists: false,
    backfillRelatedEntities: false,
  });
  const standIn = await stripeStandIn();
  sync.stripe = new Stripe('sk_test_bench_peer', {
    host: '127.0.0.1',
    port: standIn,
    protocol: 'http',
    maxNetworkRetries: 0,
  });

  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/healthz') return answer(res, 200, { status: 'ok' });
      if (req.method === 'GET' && req.url === '/stats') return answer(res, 200, stats);
      if (req.method !== 'POST' || req.url !== '/webhooks/stripe') return answer(res, 404, {});
      const body = await readBody(req);
      try {
        await sync.processWebhook(body, req.headers['stripe-signature']);
      } catch (err) {
        const bad = err && err.type === 'StripeSignatureVerificationError';
        if (bad) stats.rejected += 1;
        else stats.failed += 1;
        stats.lastError = String(err && err.message);
        return answer(res, bad ? 400 : 500, { error: stats.lastError });
      }
      stats.applied += 1;
      return answer(res, 200, { received: true });
    } catch (err) {
      stats.failed += 1;
      stats.lastError = String(err && err.message);
      return answer(res, 500, { error: stats.lastError });
    }
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, '127.0.0.1', () => console.log(`peer listening on 127.0.0.1:${port}`));
  const stop = () => server.close(() => sync.postgresClient.pool.end().then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
