// Package faultsuite holds txoutbox's fault suite: tests that break things
// for real and check that the guarantees of docs/guarantees.md hold. It has
// no API; everything is in its _test.go files.
//
// The tests run relays as separate OS processes (the test binary, re-executed
// with a configuration in the environment) and in the test process, against
// a throwaway PostgreSQL cluster of their own (internal/pglocal, so the
// PostgreSQL server binaries must be installed). They
//
//   - kill a relay process with SIGKILL at random moments and restart it
//     (kill_test.go), also while it publishes to NATS JetStream
//     (nats_test.go, against the server internal/natstest finds) and to
//     RabbitMQ (rabbit_test.go, against the broker internal/rabbittest
//     finds);
//   - put a TCP proxy between a relay and PostgreSQL that drops, refuses
//     and stalls connections (cut_test.go);
//   - run several relay processes against out-of-order commits and
//     long-running producer transactions (compete_test.go);
//   - feed poison entries among healthy ones (poison_test.go);
//   - drain many entries while sampling a relay process's memory and its
//     connections (bounds_test.go).
//
// Sizes default to a few seconds of work each, for CI under -race.
// TXOUTBOX_FAULT_FULL=1 switches to the full sizes of docs/reliability.md,
// and each size has a variable of its own (see knobs in main_test.go).
// TXOUTBOX_FAULT_SEED fixes the random choices (kill moments, sleeps);
// every test logs the seed it used.
package faultsuite
