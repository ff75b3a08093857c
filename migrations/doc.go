// Package migrations holds txoutbox's database schema as goose migrations and
// applies them.
//
// # Three ways to migrate
//
//   - From Go: [Up], [Down] and [Status] run the embedded migrations through a
//     goose Provider. They track applied versions in their own table,
//     [VersionTable], so they never collide with an application's own goose
//     history. Concurrent callers (several relays starting at once) are
//     serialised with a Postgres advisory lock.
//   - From the command line: `txoutbox migrate up|down|status`.
//   - With another migration tool: [SQL] returns each migration's plain SQL for
//     the up or down direction, ready to be copied into that tool's files.
//
// The schema itself — the tables outbox_entries and outbox_processed_keys —
// is a public contract, documented in docs/schema.md.
//
// This package imports nothing else from txoutbox.
package migrations
