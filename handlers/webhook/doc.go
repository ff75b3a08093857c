// Package webhook is txoutbox's built-in handler for signed HTTP webhooks,
// following the Standard Webhooks specification
// (https://www.standardwebhooks.com/).
//
// # Use
//
// Configure the receivers by name, register the handler on the relay's
// registry, and enqueue an [Event] in the transaction that makes the
// change it reports:
//
//	h := relay.NewHandlers()
//	err := webhook.Register(h, webhook.Config{
//		Endpoints: map[string]webhook.Endpoint{
//			"billing": {
//				URL:     "https://billing.example.com/hooks",
//				Secrets: []string{os.Getenv("BILLING_WEBHOOK_SECRET")}, // "whsec_..."
//			},
//		},
//	})
//	if err != nil { ... } // every problem, each a *ConfigError naming the endpoint
//	r, err := relay.New(pool, relay.Config{Handlers: h})
//
//	// In the producer's transaction:
//	outbox.Enqueue(ctx, tx, webhook.Event{
//		Endpoint: "billing",
//		Type:     "invoice.paid",
//		Data:     json.RawMessage(`{"invoice":"inv_17"}`),
//	}, outbox.WithKey("invoice.paid:inv_17"))
//
// [New] builds a [Handler] without registering it, for applications that
// wrap [Handler.Handle] in their own relay.Handle function.
//
// Entries have the topic [Topic] ("webhook.deliver"), fixed by the payload
// type; pick a queue, priority or ordering key per entry with the outbox
// enqueue options. Producers without Go (plain SQL) write the same JSON:
// {"endpoint": "billing", "type": "invoice.paid", "data": {...}}.
//
// # The request
//
// Each attempt is a POST with Content-Type application/json and:
//
//   - webhook-id: the entry's idempotency key, the same on every attempt,
//     so the receiver can drop a repeat (the one a crash between the
//     request and the entry's completion can cause). A key that an HTTP
//     header would not carry unchanged (control or non-ASCII characters,
//     surrounding spaces) is replaced by "txkey_" and its hex SHA-256.
//   - webhook-timestamp: the attempt's time in Unix seconds (Config.Clock).
//   - webhook-signature: "v1," and the base64 HMAC-SHA256, keyed with the
//     secret's decoded bytes, of "<webhook-id>.<webhook-timestamp>.<body>";
//     one such signature per configured secret, space-separated, so a
//     secret can be rotated while receivers switch over.
//   - the endpoint's own Headers, and User-Agent.
//
// The body is the envelope the spec recommends,
// {"type": Event.Type, "timestamp": <when the entry was created>,
// "data": Event.Data}, identical on every attempt; an endpoint with RawBody
// set receives Event.Data alone.
//
// # Outcomes
//
//	2xx                               done; the status is recorded as a Result on the entry
//	3xx (not followed)                dead-lettered: the endpoint URL is out of date
//	408, 409, 425, 429                retried, after Retry-After if given
//	other 4xx (400, 404, 410, ...)    dead-lettered
//	5xx                               retried, after Retry-After if given
//	network error, timeout            retried (ErrTimeout after Config.Timeout)
//	refused address                   dead-lettered (ErrForbiddenAddress)
//	redirect to another origin        dead-lettered (ErrCrossOriginRedirect), with FollowRedirects
//	invalid event, unknown endpoint   dead-lettered (ErrInvalidEvent, ErrUnknownEndpoint, ErrAdHocNotAllowed)
//
// Retry-After (seconds or an HTTP-date) replaces the retry policy's delay
// for that attempt, capped at Config.MaxRetryAfter (24h); attempts still
// count against the entry's limit. Non-2xx responses fail with a
// [*StatusError] carrying the status and the start of the body; at most
// Config.MaxResponseBytes (64 KiB) of any response is read.
//
// # Redirects
//
// Redirects are not followed by default. With Config.FollowRedirects, only
// 307 and 308 are (they keep the method, body and signature), at most 5,
// and only within the endpoint's origin: the same scheme, host name and
// port. Host names are compared as written, case aside, with no DNS
// lookup ("localhost" and "127.0.0.1" are different hosts), and a missing
// port is the scheme's default (80 or 443). A redirect to another origin
// is refused with a [*RedirectError] (ErrCrossOriginRedirect) and
// dead-letters the entry: the request carries the endpoint's Headers (an
// API key, say) and the signature, and Go's client would strip only
// Authorization from them. Refusing is simpler to reason about than
// stripping, and a receiver that moved is fixed by pointing the endpoint
// at its new URL. A redirect that is not followed dead-letters the entry
// too rather than retrying it: nothing but a configuration change makes
// it succeed. Fix the URL, then replay the dead entries (outbox.Replay).
//
// # Internal addresses
//
// Unless Config.AllowPrivateNetworks is set, the handler connects only to
// global unicast addresses: IPv4 and IPv6 (2000::/3) addresses outside
// every block of the IANA IPv4 and IPv6 Special-Purpose Address
// Registries, multicast and the reserved space. Refused are, among others,
// loopback, private (RFC 1918, fc00::/7), link-local (including the cloud
// metadata service at 169.254.169.254), shared (100.64.0.0/10, CGNAT),
// "this network" (0.0.0.0/8), documentation and benchmarking ranges,
// 240.0.0.0/4, multicast, and every IPv6 form that carries an IPv4
// address, whatever that address: IPv4-mapped (::ffff:0:0/96),
// IPv4-compatible (::/96), IPv4-translated (::ffff:0:0:0/96), NAT64
// (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32).
// Give such a receiver its IPv4 address instead.
//
// Endpoint URLs whose host is a refused IP literal fail [New]; ad-hoc URLs
// with one are dead-lettered before any request. A host name is resolved
// by the handler when a connection is about to be made; if any of its
// addresses is refused, so is the name, and otherwise the handler
// connects to the addresses it checked, so a name that resolves — or is
// rebound — to an internal address is refused too. (An IPv4 address a
// resolver returns in IPv4-mapped form is judged as the IPv4 address.)
// Proxies from the environment are not used.
//
// # Ad-hoc URLs
//
// By default an event must name a configured endpoint. Setting Config.AdHoc
// lets events carry a URL instead (say, one a customer registered); those
// requests are signed with Config.AdHoc's secrets. The address checks apply
// to them as to every request, which matters most here: the URL comes from
// data, not from configuration. Secrets never travel in entries.
package webhook
