// Package bench runs the scenarios of `txoutbox bench`: end-to-end
// measurements of the producer, the relay and the relay's SQL against a
// real PostgreSQL database. The sidecar package wires it to the command
// line; it has no other users, and lives under sidecar/internal so that
// only the sidecar can import it.
//
// # Scenarios
//
//   - enqueue: what enqueueing adds to a producer's transaction. One
//     producer runs transactions back to back, alternating blocks of a bare
//     domain insert with blocks of the same insert plus one outbox.Enqueue,
//     then transactions of one outbox.EnqueueBatch of 100 entries.
//   - raw: the relay's claim and completion statements (store.Claim and
//     store.Complete, with the relay's default batch sizes, lease and
//     handler options) run from a tight loop without the relay, over a
//     backlog of Config.Entries entries: the ceiling the relay is measured
//     against. Twice: once as one loop that claims a batch and completes
//     it, once as two loops on two connections, a claimer feeding a
//     completer as the relay's claim loop feeds its completer.
//   - drain: Config.Entries pending entries are written with COPY while no
//     relay runs, then a relay with the default configuration starts and
//     the clock runs until its Observer has counted every entry done. With
//     Config.Processes, that many child processes (the executable with
//     the hidden subcommand RelayProcessCommand, see [RunRelayProcess])
//     each run such a relay instead, started together once all are
//     connected, and the clock runs until a query every 10 ms finds no
//     entry pending or running.
//   - steady: Config.Producers goroutines share an open-loop schedule of
//     Config.Rate transactions a second for Config.Duration, each inserting
//     a domain row and enqueueing one entry, while a relay runs; the
//     latency from each commit to its handler starting is recorded.
//
// Every scenario prepares its data untimed (truncating the outbox tables,
// COPY, VACUUM ANALYZE and CHECKPOINT where it matters) and verifies
// afterwards that every entry it wrote ended done. The handler is a no-op
// registered with relay.Handle and default handler options, so the figures
// are the outbox's own cost, not a handler's.
//
// # Databases
//
// A [Runner] works on one migrated database. With Config.Existing unset
// it owns the database and truncates the outbox tables between runs (the
// caller makes a scratch database for it and drops it afterwards); with
// Config.Existing set it deletes only the rows of its own topic
// ([Topic]) and removes them again in [Runner.Close].
//
// # Results
//
// A scenario run returns a [Result]: named metrics, each either a setting
// (copied into summaries) or a measurement (summarised as median, min and
// max over runs). [WriteJSON], [WriteSummaryJSON] and [WriteTable] print
// them as `txoutbox bench` does; docs/sidecar.md lists every field.
package bench
