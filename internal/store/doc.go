// Package store is the relay's data-access layer: every statement the relay
// runs against outbox_entries and outbox_processed_keys, with its parameters
// typed. It holds no state beyond its connection pool, so each operation can
// be tested on its own against a real database.
//
// Time: every statement takes a nullable "now". Nil uses the database clock
// (the normal case); a value injects a clock for tests.
package store
