"""nats-py (the NATS project's Python client, unchanged) against flit's NATS
listener, one scenario per run: `python3 flit_nats_suite.py SCENARIO`.

Run by tests/nats_python_client.rs, which starts the server (flit, or with
FLIT_NATS_SERVER=nats-server a real nats-server, the reference these
expectations were checked against) and passes its settings in the
environment: NATS_URL, NATS_MAX_PAYLOAD, NATS_TOKEN, NATS_ORDERS_USER,
NATS_ORDERS_PASSWORD, NATS_ADMIN_USER, NATS_ADMIN_PASSWORD, NATS_CA_FILE.

Each scenario checks what a NATS application relies on: wildcard matching,
queue groups (each message to exactly one member), request/reply, the
no-responders status at once rather than a timeout, headers, auto-unsubscribe,
max_payload from INFO, flush as a round trip, drain, token and user/password
authentication, permission violations reported without closing the
connection, and the TLS upgrade. Every wait has a timeout; the exit status is
0 only when every check held.
"""

import asyncio
import os
import ssl
import sys
import time

try:
    import nats
    import nats.aio.client
    from nats import errors
except ImportError as missing:
    sys.exit(f"nats-py is not installed ({missing}): python3 -m pip install nats-py==2.16.0")

URL = os.environ["NATS_URL"]
MAX_PAYLOAD = int(os.environ["NATS_MAX_PAYLOAD"])
# A bound on every single wait: generous for a loaded CI machine, short
# enough that a lost message fails the run quickly.
WAIT_SECONDS = 5.0
# The whole scenario, as a backstop behind the per-wait bounds.
SCENARIO_SECONDS = 60.0


class Failure(Exception):
    """A check that did not hold."""


def check(condition, message):
    if not condition:
        raise Failure(message)


async def connect(url=URL, **options):
    """A client that never reconnects (a lost connection must fail the
    scenario, not be papered over) and records what its error callback gets."""
    reported = []

    async def on_error(error):
        reported.append(error)

    client = await nats.connect(
        url,
        connect_timeout=WAIT_SECONDS,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=on_error,
        **options,
    )
    client.reported_errors = reported
    return client


async def round_trip(client):
    """Everything published before this call has reached the server, and
    everything the server sent in answer has been received.

    One flush is not that in nats-py 2.16: flush() writes its PING straight
    to the socket, while publish() leaves the PUB in a buffer that a separate
    task writes out, so the PING can overtake the PUB (seen against
    nats-server as well, under load) and the PONG then proves nothing about
    it. During the first flush's wait that task has run, so the second PING
    follows the PUB on the wire and its PONG follows the server's answer."""
    await client.flush(timeout=WAIT_SECONDS)
    await client.flush(timeout=WAIT_SECONDS)


async def next_message(subscription):
    return await subscription.next_msg(timeout=WAIT_SECONDS)


async def wait_until(condition, what):
    """Polls `condition` until true, at most WAIT_SECONDS; for counts that
    arrive through callbacks on other connections."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def scenario_connect():
    client = await connect()
    check(client.is_connected, "not connected after connect()")
    check(
        client.max_payload == MAX_PAYLOAD,
        f"INFO max_payload {client.max_payload}, configured {MAX_PAYLOAD}",
    )
    await round_trip(client)
    await client.close()
    check(client.is_closed, "not closed after close()")


async def scenario_wildcards():
    # One connection publishes and subscribes: everything the server sends it
    # for these publishes precedes the answer to its round trip, so after it
    # "nothing more" is certain, not a guess after a sleep.
    client = await connect()
    one_token = await client.subscribe("wild.*")
    the_rest = await client.subscribe("wild.>")
    middle = await client.subscribe("wild.*.created")
    exact = await client.subscribe("wild.eu.created")
    await round_trip(client)
    for subject in ["wild.eu", "wild.eu.created", "wild.us.created.late", "wild", "tame.eu"]:
        await client.publish(subject, subject.encode())
    await round_trip(client)
    expected = {
        "wild.*": (one_token, ["wild.eu"]),
        "wild.>": (the_rest, ["wild.eu", "wild.eu.created", "wild.us.created.late"]),
        "wild.*.created": (middle, ["wild.eu.created"]),
        "wild.eu.created": (exact, ["wild.eu.created"]),
    }
    for pattern, (subscription, subjects) in expected.items():
        received = []
        for _ in subjects:
            message = await next_message(subscription)
            check(message.data == message.subject.encode(), f"{pattern}: payload {message.data!r}")
            received.append(message.subject)
        check(received == subjects, f"{pattern} received {received}, expected {subjects}")
        check(subscription.pending_msgs == 0, f"{pattern} has {subscription.pending_msgs} extra messages")
    await client.close()


async def scenario_queue_groups():
    message_count = 300
    members = [await connect() for _ in range(3)]
    received = [[] for _ in members]
    for index, member in enumerate(members):

        async def on_message(message, index=index):
            received[index].append(int(message.data))

        await member.subscribe("work.items", queue="workers", cb=on_message)
        await round_trip(member)
    # A plain subscriber beside the group sees every message.
    observer = await connect()
    observed = await observer.subscribe("work.items")
    await round_trip(observer)
    publisher = await connect()
    for number in range(message_count):
        await publisher.publish("work.items", str(number).encode())
    await round_trip(publisher)
    await wait_until(lambda: sum(map(len, received)) >= message_count, f"{message_count} queued messages")
    # Late duplicates would arrive before each member's round trip ends.
    for member in members:
        await round_trip(member)
    everything = [number for numbers in received for number in numbers]
    counts = [len(numbers) for numbers in received]
    check(len(everything) == message_count, f"members received {counts}, {len(everything)} in all, sent {message_count}")
    check(sorted(everything) == list(range(message_count)), "a message was duplicated or lost across the group")
    print(f"queue group distribution: {counts}")
    seen = [int((await next_message(observed)).data) for _ in range(message_count)]
    check(seen == list(range(message_count)), "the plain subscriber missed messages or saw them out of order")
    for client in members + [observer, publisher]:
        await client.close()


async def scenario_request_reply():
    responder = await connect()

    async def echo(message):
        await message.respond(b"echo:" + message.data)

    await responder.subscribe("service.echo", cb=echo)
    await round_trip(responder)
    requester = await connect()
    # Concurrent requests share nats-py's one response subscription; each
    # answer must come back to the request that asked.
    payloads = [f"question-{number}".encode() for number in range(20)]
    answers = await asyncio.gather(*(requester.request("service.echo", p, timeout=WAIT_SECONDS) for p in payloads))
    for payload, answer in zip(payloads, answers):
        check(answer.data == b"echo:" + payload, f"asked {payload!r}, answered {answer.data!r}")
    await requester.close()
    await responder.close()


async def scenario_no_responders():
    client = await connect()
    request_timeout = 5.0
    started = time.monotonic()
    try:
        await client.request("nobody.listens.here", b"anyone?", timeout=request_timeout)
        raise Failure("a request without responders was answered")
    except errors.NoRespondersError:
        pass
    except errors.TimeoutError:
        raise Failure("the request timed out: no 503 no-responders status came back")
    elapsed = time.monotonic() - started
    check(elapsed < 1.0, f"no-responders took {elapsed:.2f} s (timeout {request_timeout} s): not at once")
    # The connection is unaffected.
    await round_trip(client)
    await client.close()


async def scenario_headers():
    # nats-py keeps headers in a dict, one value per key, so multi-valued
    # keys are covered by the async-nats and nats.js suites.
    client = await connect()
    subscription = await client.subscribe("headers.plain")
    await round_trip(client)
    sent = {"Trace-Id": "abc-123", "Content-Kind": "text/plain; charset=utf-8"}
    await client.publish("headers.plain", b"with headers", headers=sent)
    message = await next_message(subscription)
    check(message.data == b"with headers", f"payload {message.data!r}")
    check(message.headers == sent, f"headers {message.headers}, sent {sent}")
    # An empty payload with headers (HPUB with payload size 0).
    await client.publish("headers.plain", b"", headers={"Only": "headers"})
    message = await next_message(subscription)
    check(message.data == b"" and message.headers == {"Only": "headers"}, f"got {message.data!r} {message.headers}")
    # A plain PUB after an HPUB carries no headers.
    await client.publish("headers.plain", b"no headers")
    message = await next_message(subscription)
    check(message.headers is None, f"a plain publish arrived with headers {message.headers}")

    # Headers in a request reach the responder, and its reply's come back.
    # (Msg.respond would echo the request's headers; publishing to the reply
    # subject sets the reply's own.)
    async def respond(message):
        seen = message.headers.get("Trace-Id", "none")
        await client.publish(message.reply, b"ok", headers={"Seen-Trace": seen})

    await client.subscribe("headers.service", cb=respond)
    await round_trip(client)
    answer = await client.request("headers.service", b"q", timeout=WAIT_SECONDS, headers={"Trace-Id": "t-77"})
    check(answer.headers == {"Seen-Trace": "t-77"}, f"reply headers {answer.headers}")
    await client.close()


async def scenario_unsubscribe_max():
    # The same connection publishes, so after the round trip every delivery the
    # server made has arrived: in_msgs counts what the server sent, not only
    # what nats-py passed on, so the server's own auto-unsubscribe is checked.
    client = await connect()
    subscription = await client.subscribe("limited.subject")
    await subscription.unsubscribe(limit=3)
    for number in range(5):
        await client.publish("limited.subject", str(number).encode())
    await round_trip(client)
    received = [int((await next_message(subscription)).data) for _ in range(3)]
    check(received == [0, 1, 2], f"received {received}")
    check(client.stats["in_msgs"] == 3, f"the server sent {client.stats['in_msgs']} messages after a max of 3")
    # The subscription is gone: later publishes reach nobody.
    await client.publish("limited.subject", b"after")
    await round_trip(client)
    check(client.stats["in_msgs"] == 3, "a message arrived after the auto-unsubscribe")
    await client.close()


async def scenario_max_payload():
    client = await connect()
    check(client.max_payload == MAX_PAYLOAD, f"INFO max_payload {client.max_payload}, configured {MAX_PAYLOAD}")
    subscription = await client.subscribe("big.subject")
    await round_trip(client)
    exactly = bytes(number % 251 for number in range(MAX_PAYLOAD))
    await client.publish("big.subject", exactly)
    message = await next_message(subscription)
    check(message.data == exactly, f"a {len(exactly)}-byte payload came back as {len(message.data)} bytes")
    try:
        await client.publish("big.subject", exactly + b"!")
        raise Failure(f"a {MAX_PAYLOAD + 1}-byte payload was accepted")
    except errors.MaxPayloadError:
        pass
    # Refused in the client, so the connection is intact.
    await round_trip(client)
    check(client.is_connected, "disconnected after an oversized publish")
    check(not client.reported_errors, f"errors reported: {client.reported_errors}")
    await client.close()


async def scenario_flush():
    client = await connect()
    subscription = await client.subscribe("flush.subject")
    await round_trip(client)
    await client.publish("flush.subject", b"before the flush")
    # The PONG comes after the echo of the publish, so the message is already
    # here when the round trip returns: proof the server answers PING in
    # order. (Two flushes: see round_trip for nats-py's reordering.)
    await round_trip(client)
    check(subscription.pending_msgs == 1, f"{subscription.pending_msgs} messages pending after flush, expected 1")
    await client.close()


async def scenario_drain():
    message_count = 50
    closed = asyncio.Event()

    async def on_closed():
        closed.set()

    client = await connect(closed_cb=on_closed)
    handled = []

    async def slow_handler(message):
        # Yield so that messages are still queued when drain begins.
        await asyncio.sleep(0.001)
        handled.append(int(message.data))

    await client.subscribe("drain.subject", cb=slow_handler)
    await round_trip(client)
    for number in range(message_count):
        await client.publish("drain.subject", str(number).encode())
    # drain: unsubscribe, let the messages already sent be handled, flush,
    # close. The publishes precede the UNSUB, so all of them are delivered.
    await asyncio.wait_for(client.drain(), WAIT_SECONDS)
    await asyncio.wait_for(closed.wait(), WAIT_SECONDS)
    check(client.is_closed, "not closed after drain")
    check(handled == list(range(message_count)), f"handled {len(handled)} of {message_count}: {handled[:10]}...")
    try:
        await client.publish("drain.subject", b"late")
        raise Failure("publish after drain succeeded")
    except errors.ConnectionClosedError:
        pass


async def expect_authorization_refused(what, **options):
    try:
        client = await connect(**options)
    except errors.Error as error:
        text = str(error).lower()
        check("authorization violation" in text, f"{what}: refused with {error!r}, not an authorization violation")
        return
    await client.close()
    raise Failure(f"{what}: connected")


async def scenario_token():
    client = await connect(token=os.environ["NATS_TOKEN"])
    subscription = await client.subscribe("token.subject")
    await client.publish("token.subject", b"authorized")
    check((await next_message(subscription)).data == b"authorized", "round trip with the token")
    await client.close()
    await expect_authorization_refused("wrong token", token="not-the-token-0000")
    await expect_authorization_refused("no token")


async def scenario_user_password():
    user = os.environ["NATS_ADMIN_USER"]
    password = os.environ["NATS_ADMIN_PASSWORD"]
    client = await connect(user=user, password=password)
    subscription = await client.subscribe("anything.goes")
    await client.publish("anything.goes", b"authorized")
    check((await next_message(subscription)).data == b"authorized", "round trip as admin")
    await client.close()
    await expect_authorization_refused("wrong password", user=user, password="wrong-password")
    await expect_authorization_refused("unknown user", user="nobody", password=password)
    await expect_authorization_refused("no credentials")
    # Credentials in the URL, a common way to configure clients.
    url = URL.replace("nats://", f"nats://{user}:{password}@")
    client = await connect(url=url)
    await round_trip(client)
    await client.close()


async def wait_for_reported(client, count, what):
    await wait_until(lambda: len(client.reported_errors) >= count, what)


async def scenario_permissions():
    client = await connect(user=os.environ["NATS_ORDERS_USER"], password=os.environ["NATS_ORDERS_PASSWORD"])
    allowed = await client.subscribe("orders.created")
    await round_trip(client)

    # A denied publish: reported through the error callback (nats-py lower-
    # cases the server's text), the connection stays open.
    await client.publish("orders.secret.plan", b"leak")
    await round_trip(client)
    await wait_for_reported(client, 1, "the publish permissions violation")
    text = str(client.reported_errors[0])
    expected = 'nats: permissions violation for publish to "orders.secret.plan"'
    check(text == expected, f"error callback got {text!r}, expected {expected!r}")
    # Not allowed at all (outside orders.>), not just denied.
    await client.publish("billing.invoice", b"x")
    await round_trip(client)
    await wait_for_reported(client, 2, "the second publish permissions violation")
    text = str(client.reported_errors[1])
    expected = 'nats: permissions violation for publish to "billing.invoice"'
    check(text == expected, f"error callback got {text!r}, expected {expected!r}")
    check(client.is_connected, "the connection closed after a publish violation")

    # A denied subscription: the same, and nothing is delivered to it.
    denied = await client.subscribe("orders.secret.>")
    await round_trip(client)
    await wait_for_reported(client, 3, "the subscribe permissions violation")
    text = str(client.reported_errors[2])
    expected = 'nats: permissions violation for subscription to "orders.secret.>"'
    check(text == expected, f"error callback got {text!r}, expected {expected!r}")
    check(client.is_connected, "the connection closed after a subscribe violation")

    # Still usable: an allowed publish arrives, the denied one never did.
    await client.publish("orders.created", b"fine")
    message = await next_message(allowed)
    check(message.data == b"fine", f"allowed message {message.data!r}")
    await round_trip(client)
    check(denied.pending_msgs == 0, "the denied subscription received a message")
    check(len(client.reported_errors) == 3, f"errors reported: {client.reported_errors}")

    # Request/reply through _INBOX works under permissions.
    async def respond(message):
        await message.respond(b"answer")

    await client.subscribe("orders.service", cb=respond)
    await round_trip(client)
    answer = await client.request("orders.service", b"q", timeout=WAIT_SECONDS)
    check(answer.data == b"answer", f"answer {answer.data!r}")
    await client.close()


async def scenario_tls():
    context = ssl.create_default_context(cafile=os.environ["NATS_CA_FILE"])
    client = await connect(tls=context)
    check(client.is_connected, "not connected over TLS")
    subscription = await client.subscribe("secure.subject")
    await round_trip(client)
    await client.publish("secure.subject", b"encrypted")
    check((await next_message(subscription)).data == b"encrypted", "round trip over TLS")
    await client.close()
    # Without the CA the certificate is not trusted: the handshake is real.
    untrusting = ssl.create_default_context()
    try:
        client = await connect(tls=untrusting)
    except (ssl.SSLError, errors.Error, OSError) as error:
        check("certificate" in str(error).lower(), f"refused for another reason: {error!r}")
    else:
        await client.close()
        raise Failure("connected with a context that does not trust the CA")


SCENARIOS = {
    name[len("scenario_") :]: function for name, function in globals().items() if name.startswith("scenario_")
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} SCENARIO, one of {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    print(f"nats-py {nats.aio.client.__version__}, scenario {name}, {URL}")
    try:
        asyncio.run(asyncio.wait_for(SCENARIOS[name](), SCENARIO_SECONDS))
    except Failure as failure:
        print(f"FAILED {name}: {failure}", file=sys.stderr)
        return 1
    print(f"passed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
