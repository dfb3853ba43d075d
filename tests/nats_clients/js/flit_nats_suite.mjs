// nats.js (@nats-io/transport-node, the NATS project's JavaScript client,
// unchanged) against flit's NATS listener, one scenario per run:
// `node flit_nats_suite.mjs SCENARIO`.
//
// Run by tests/nats_js_client.rs, which starts the server (flit, or with
// FLIT_NATS_SERVER=nats-server a real nats-server, the reference these
// expectations were checked against) and passes its settings in the
// environment: NATS_URL, NATS_MAX_PAYLOAD, NATS_TOKEN, NATS_ORDERS_USER,
// NATS_ORDERS_PASSWORD, NATS_ADMIN_USER, NATS_ADMIN_PASSWORD, NATS_CA_FILE.
// Dependencies: `npm ci` in this directory (package-lock.json pins them).
//
// The scenarios are those of the nats-py suite (../python): wildcards, queue
// groups, request/reply, no responders at once, headers (multi-valued keys
// too), auto-unsubscribe, max_payload, flush as a round trip, drain, token
// and user/password authentication, permission violations, TLS. Every wait
// has a timeout; the exit status is 0 only when every check held.

import { connect, errors, headers } from "@nats-io/transport-node";

const URL = process.env.NATS_URL;
const MAX_PAYLOAD = Number(process.env.NATS_MAX_PAYLOAD);
// A bound on every single wait, in milliseconds.
const WAIT_MS = 5000;
// The whole scenario, as a backstop behind the per-wait bounds.
const SCENARIO_MS = 60000;

class Failure extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new Failure(message);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (message) => decoder.decode(message.data);

// A client that never reconnects (a lost connection must fail the scenario,
// not be hidden) and records the errors its status stream reports.
async function connectClient(options = {}) {
  const client = await connect({
    servers: URL,
    timeout: WAIT_MS,
    reconnect: false,
    maxReconnectAttempts: 0,
    ...options,
  });
  client.reportedErrors = [];
  (async () => {
    for await (const status of client.status()) {
      if (status.type === "error") {
        client.reportedErrors.push(status.error);
      }
    }
  })();
  return client;
}

// Polls `condition` until true, at most WAIT_MS.
async function waitUntil(condition, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Failure(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// A subscription whose messages collect in an array.
function collect(client, subject, options = {}) {
  const messages = [];
  const subscription = client.subscribe(subject, {
    ...options,
    callback: (error, message) => {
      if (!error) {
        messages.push(message);
      }
    },
  });
  return { messages, subscription };
}

function sameList(left, right) {
  return JSON.stringify(left) === JSON.stringify(right);
}

const scenarios = {
  async connect() {
    const client = await connectClient();
    check(client.info.max_payload === MAX_PAYLOAD, `INFO max_payload ${client.info.max_payload}, configured ${MAX_PAYLOAD}`);
    check(client.info.headers === true, "INFO does not say headers: true");
    await client.flush();
    await client.close();
    check(client.isClosed(), "not closed after close()");
  },

  async wildcards() {
    // One connection publishes and subscribes: what the server sends it for
    // these publishes precedes the answer to its flush.
    const client = await connectClient();
    const expected = {
      "wild.*": ["wild.eu"],
      "wild.>": ["wild.eu", "wild.eu.created", "wild.us.created.late"],
      "wild.*.created": ["wild.eu.created"],
      "wild.eu.created": ["wild.eu.created"],
    };
    const collected = Object.fromEntries(Object.keys(expected).map((pattern) => [pattern, collect(client, pattern)]));
    await client.flush();
    for (const subject of ["wild.eu", "wild.eu.created", "wild.us.created.late", "wild", "tame.eu"]) {
      client.publish(subject, encoder.encode(subject));
    }
    await client.flush();
    for (const [pattern, subjects] of Object.entries(expected)) {
      const received = collected[pattern].messages.map((message) => message.subject);
      check(sameList(received, subjects), `${pattern} received ${received}, expected ${subjects}`);
    }
    await client.close();
  },

  async queue_groups() {
    const messageCount = 300;
    const members = [];
    for (let index = 0; index < 3; index++) {
      const client = await connectClient();
      const { messages } = collect(client, "work.items", { queue: "workers" });
      await client.flush();
      members.push({ client, messages });
    }
    const publisher = await connectClient();
    for (let number = 0; number < messageCount; number++) {
      publisher.publish("work.items", encoder.encode(String(number)));
    }
    await publisher.flush();
    const total = () => members.reduce((sum, member) => sum + member.messages.length, 0);
    await waitUntil(() => total() >= messageCount, `${messageCount} queued messages`);
    for (const member of members) {
      await member.client.flush();
    }
    const numbers = members.flatMap((member) => member.messages.map((message) => Number(text(message))));
    const counts = members.map((member) => member.messages.length);
    check(numbers.length === messageCount, `members received ${counts}, sent ${messageCount}`);
    numbers.sort((left, right) => left - right);
    check(sameList(numbers, [...Array(messageCount).keys()]), "a message was duplicated or lost across the group");
    console.log(`queue group distribution: ${counts}`);
    for (const client of [...members.map((member) => member.client), publisher]) {
      await client.close();
    }
  },

  async request_reply() {
    const responder = await connectClient();
    responder.subscribe("service.echo", {
      callback: (error, message) => {
        if (!error) {
          message.respond(encoder.encode(`echo:${text(message)}`));
        }
      },
    });
    await responder.flush();
    const requester = await connectClient();
    const questions = [...Array(20).keys()].map((number) => `question-${number}`);
    const answers = await Promise.all(
      questions.map((question) => requester.request("service.echo", encoder.encode(question), { timeout: WAIT_MS })),
    );
    questions.forEach((question, index) => {
      check(text(answers[index]) === `echo:${question}`, `asked ${question}, answered ${text(answers[index])}`);
    });
    await requester.close();
    await responder.close();
  },

  async no_responders() {
    const client = await connectClient();
    const requestTimeout = 5000;
    const started = Date.now();
    try {
      await client.request("nobody.listens.here", encoder.encode("anyone?"), { timeout: requestTimeout });
      throw new Failure("a request without responders was answered");
    } catch (error) {
      if (error instanceof Failure) throw error;
      const noResponders =
        error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.isNoResponders());
      check(noResponders, `the request failed with ${error} (${error.name}), not no-responders`);
    }
    const elapsed = Date.now() - started;
    check(elapsed < 1000, `no-responders took ${elapsed} ms (timeout ${requestTimeout} ms): not at once`);
    await client.flush();
    await client.close();
  },

  async headers() {
    const client = await connectClient();
    const { messages } = collect(client, "headers.plain");
    await client.flush();
    const sent = headers();
    sent.set("Trace-Id", "abc-123");
    sent.append("Hop", "first");
    sent.append("Hop", "second");
    client.publish("headers.plain", encoder.encode("with headers"), { headers: sent });
    client.publish("headers.plain", encoder.encode("plain"));
    await client.flush();
    check(messages.length === 2, `received ${messages.length} messages, expected 2`);
    const [withHeaders, plain] = messages;
    check(text(withHeaders) === "with headers", `payload ${text(withHeaders)}`);
    check(withHeaders.headers?.get("Trace-Id") === "abc-123", "Trace-Id lost");
    const hops = withHeaders.headers?.values("Hop");
    check(sameList(hops, ["first", "second"]), `multi-valued Hop came back as ${hops}`);
    check(plain.headers === undefined, "a plain publish arrived with headers");

    // A request's headers reach the responder; the reply's come back.
    client.subscribe("headers.service", {
      callback: (error, message) => {
        const reply = headers();
        reply.set("Seen-Trace", message.headers?.get("Trace-Id") ?? "none");
        message.respond(encoder.encode("ok"), { headers: reply });
      },
    });
    await client.flush();
    const request = headers();
    request.set("Trace-Id", "t-77");
    const answer = await client.request("headers.service", encoder.encode("q"), { timeout: WAIT_MS, headers: request });
    check(answer.headers?.get("Seen-Trace") === "t-77", "the responder did not see the request's header");
    await client.close();
  },

  async unsubscribe_max() {
    // nats.js sends UNSUB sid 3 with the SUB; inMsgs counts what the server
    // sent, so the server's own auto-unsubscribe is checked.
    const client = await connectClient();
    const { messages } = collect(client, "limited.subject", { max: 3 });
    for (let number = 0; number < 5; number++) {
      client.publish("limited.subject", encoder.encode(String(number)));
    }
    await client.flush();
    check(sameList(messages.map(text), ["0", "1", "2"]), `received ${messages.map(text)}`);
    check(client.stats().inMsgs === 3, `the server sent ${client.stats().inMsgs} messages after a max of 3`);
    await client.close();
  },

  async max_payload() {
    const client = await connectClient();
    check(client.info.max_payload === MAX_PAYLOAD, `INFO max_payload ${client.info.max_payload}`);
    const { messages } = collect(client, "big.subject");
    await client.flush();
    const exactly = new Uint8Array(MAX_PAYLOAD).map((_, index) => index % 251);
    client.publish("big.subject", exactly);
    await client.flush();
    check(messages.length === 1 && Buffer.compare(messages[0].data, exactly) === 0, "the max_payload message did not come back intact");
    try {
      client.publish("big.subject", new Uint8Array(MAX_PAYLOAD + 1));
      throw new Failure(`a ${MAX_PAYLOAD + 1}-byte payload was accepted`);
    } catch (error) {
      if (error instanceof Failure) throw error;
      check(String(error.message).includes("max_payload"), `refused with ${error}, not max_payload`);
    }
    await client.flush();
    check(messages.length === 1 && client.reportedErrors.length === 0, `after the refusal: ${client.reportedErrors}`);
    await client.close();
  },

  async flush() {
    const client = await connectClient();
    const { messages } = collect(client, "flush.subject");
    await client.flush();
    client.publish("flush.subject", encoder.encode("before the flush"));
    // nats.js's flush is PING/PONG: the echo of the publish precedes the PONG.
    await client.flush();
    check(messages.length === 1, `${messages.length} messages after flush, expected 1`);
    await client.close();
  },

  async drain() {
    const messageCount = 50;
    const client = await connectClient();
    const { messages } = collect(client, "drain.subject");
    await client.flush();
    for (let number = 0; number < messageCount; number++) {
      client.publish("drain.subject", encoder.encode(String(number)));
    }
    // drain: unsubscribe, deliver what was sent before, flush, close.
    await client.drain();
    await client.closed();
    check(client.isClosed(), "not closed after drain");
    const numbers = messages.map(text).map(Number);
    check(sameList(numbers, [...Array(messageCount).keys()]), `handled ${numbers.length} of ${messageCount}`);
  },

  async token() {
    const client = await connectClient({ token: process.env.NATS_TOKEN });
    const { messages } = collect(client, "token.subject");
    client.publish("token.subject", encoder.encode("authorized"));
    await client.flush();
    check(messages.length === 1, "round trip with the token");
    await client.close();
    await expectAuthorizationRefused("a wrong token", { token: "not-the-token-0000" });
    await expectAuthorizationRefused("no token", {});
  },

  async user_password() {
    const user = process.env.NATS_ADMIN_USER;
    const pass = process.env.NATS_ADMIN_PASSWORD;
    const client = await connectClient({ user, pass });
    const { messages } = collect(client, "anything.goes");
    client.publish("anything.goes", encoder.encode("authorized"));
    await client.flush();
    check(messages.length === 1, "round trip as admin");
    await client.close();
    await expectAuthorizationRefused("a wrong password", { user, pass: "wrong-password" });
    await expectAuthorizationRefused("an unknown user", { user: "nobody", pass });
    await expectAuthorizationRefused("no credentials", {});
  },

  async permissions() {
    const client = await connectClient({ user: process.env.NATS_ORDERS_USER, pass: process.env.NATS_ORDERS_PASSWORD });
    const allowed = collect(client, "orders.created");
    await client.flush();
    client.publish("orders.secret.plan", encoder.encode("leak"));
    await client.flush();
    await waitUntil(() => client.reportedErrors.length >= 1, "the publish permissions violation");
    const publishError = client.reportedErrors[0];
    check(publishError instanceof errors.PermissionViolationError, `reported ${publishError}`);
    check(
      publishError.message === 'Permissions Violation for Publish to "orders.secret.plan"',
      `message ${publishError.message}`,
    );
    check(publishError.operation === "publish" && publishError.subject === "orders.secret.plan", "parsed wrongly");

    // nats.js closes the denied subscription with the error it parsed.
    let subscriptionError = null;
    client.subscribe("orders.secret.>", {
      callback: (error) => {
        subscriptionError = error;
      },
    });
    await client.flush();
    await waitUntil(() => client.reportedErrors.length >= 2, "the subscribe permissions violation");
    check(
      client.reportedErrors[1].message === 'Permissions Violation for Subscription to "orders.secret.>"',
      `message ${client.reportedErrors[1].message}`,
    );
    await waitUntil(() => subscriptionError !== null, "the denied subscription's error");
    check(subscriptionError instanceof errors.PermissionViolationError, `subscription got ${subscriptionError}`);

    check(!client.isClosed(), "the connection closed after the violations");
    client.publish("orders.created", encoder.encode("fine"));
    await client.flush();
    check(allowed.messages.length === 1 && text(allowed.messages[0]) === "fine", "the allowed message");
    check(client.reportedErrors.length === 2, `errors: ${client.reportedErrors}`);
    await client.close();
  },

  async tls() {
    const client = await connectClient({ tls: { caFile: process.env.NATS_CA_FILE } });
    check(client.info.tls_required === true, "INFO does not say tls_required");
    const { messages } = collect(client, "secure.subject");
    client.publish("secure.subject", encoder.encode("encrypted"));
    await client.flush();
    check(messages.length === 1 && text(messages[0]) === "encrypted", "round trip over TLS");
    await client.close();
    // Without the CA the certificate is not trusted: the handshake is real.
    try {
      const untrusting = await connectClient({ tls: {} });
      await untrusting.close();
      throw new Failure("connected without trusting the CA");
    } catch (error) {
      if (error instanceof Failure) throw error;
      const described = `${error} ${error.cause ?? ""} ${error.code ?? ""}`.toLowerCase();
      check(described.includes("certificate") || described.includes("issuer"), `refused for another reason: ${described}`);
    }
  },
};

async function expectAuthorizationRefused(what, options) {
  let client;
  try {
    client = await connectClient(options);
  } catch (error) {
    check(error instanceof errors.AuthorizationError, `${what}: refused with ${error} (${error.name})`);
    return;
  }
  await client.close();
  throw new Failure(`${what}: connected`);
}

async function main() {
  const name = process.argv[2];
  if (!(name in scenarios)) {
    console.error(`usage: node flit_nats_suite.mjs SCENARIO, one of ${Object.keys(scenarios).join(", ")}`);
    return 2;
  }
  console.log(`nats.js scenario ${name}, ${URL}`);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`the scenario took over ${SCENARIO_MS} ms`)), SCENARIO_MS);
  });
  try {
    await Promise.race([scenarios[name](), timeout]);
  } catch (error) {
    console.error(`FAILED ${name}: ${error?.stack ?? error}`);
    return 1;
  } finally {
    clearTimeout(timer);
  }
  console.log(`passed ${name}`);
  return 0;
}

process.exit(await main());
