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
//     entry pending or running. Around the COPY and the drain the
//     scenario measures what the entries cost the outbox tables (see
//     Cost per entry below).
//   - steady: Config.Producers goroutines share an open-loop schedule of
//     Config.Rate transactions a second for Config.Duration, each inserting
//     a domain row and enqueueing one entry, while a relay runs; the
//     latency from each commit to its handler starting is recorded.
//   - pressure: steady's open-loop load at Config.PressureRate (500 a
//     second by default) from Config.Producers, one relay with the default
//     configuration (its own VACUUM included), through five phases of
//     Config.PhaseDuration: clean; pinned, while one more session holds
//     `BEGIN; SELECT txid_current()` idle in its transaction, rolled back
//     at the phase's end; recovery; readers, while four sessions run
//     REPEATABLE READ transactions that count the rows of every outbox
//     table, again every second, and commit after five seconds (their
//     first transactions after 1.25, 2.5, 3.75 and 5 s, so that they end
//     at different times); and recovery2. It returns a Result per phase
//     (Result.Phase): latencies of the entries committed in the phase,
//     handler starts in it, and the tables' state at its end. It is not
//     among DefaultScenarios: at the defaults it runs ten minutes.
//
// Every scenario prepares its data untimed (truncating the outbox tables,
// COPY, VACUUM ANALYZE and CHECKPOINT where it matters) and verifies
// afterwards that every entry it wrote ended done. The handler is a no-op
// registered with relay.Handle and default handler options, so the figures
// are the outbox's own cost, not a handler's.
//
// # Cost per entry
//
// The drain scenario reports the WAL and the row writes per entry, for
// any storage layout: it sums the statistics of every table whose name
// starts with outbox_ in a schema of the search path, and of every
// partition below one, whatever its name, and uses no column. The
// sequence is: clean, CHECKPOINT, point A; COPY of Config.Entries
// entries; point B; VACUUM ANALYZE and CHECKPOINT; WAL position C; the
// timed drain and the relays' stop; point D. A point is the WAL insert
// position (pg_current_wal_insert_lsn) and the sum of n_tup_ins,
// n_tup_upd (HOT updates included) and n_tup_del from pg_stat_user_tables.
// Then wal_bytes_per_insert = (B−A)/entries, wal_bytes_per_entry =
// ((B−A)+(D−C))/entries (each part starts right after a checkpoint, so
// each pays the full-page images of the pages it touches; the VACUUM
// between them is left out), row_writes_per_insert and
// row_writes_per_entry likewise from the counts (B−A and D−A). WAL is
// the whole server's: other databases' writes meanwhile count too.
//
// A backend reports its counts asynchronously: at the end of a
// transaction at most once a second, else within about 10 s of going
// idle, but always on exit, and from PostgreSQL 15 on before it leaves
// pg_stat_activity. So before reading a point the scenario closes its
// pools' idle connections and waits until no other session named
// [AppName] (the pools' and the relay processes') is left in the
// database; before PostgreSQL 15, whose statistics collector publishes
// the counts with a delay, it also waits until they stay the same for
// 600 ms. The counts are then exact; the wait is bounded by 30 s, after
// which it warns.
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
// A scenario run returns a [Result], or one per phase: named metrics,
// each either a setting (copied into summaries) or a measurement
// (summarised as median, min and max over runs, per phase: [Groups]). [WriteJSON], [WriteSummaryJSON] and [WriteTable] print
// them as `txoutbox bench` does; docs/sidecar.md lists every field.
package bench
