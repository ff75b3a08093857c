package store

// All SQL of the relay lives in this file, to be reviewed as SQL.
// $now parameters are nullable: coalesce($n::timestamptz, now()).

// sqlClaim claims up to $4 runnable entries of queue $1 whose topic is in
// $2: pending, due, and — with an ordering key — not behind an unfinished
// entry of the same key ($7: dead entries block their key too). SKIP LOCKED
// lets concurrent relays claim disjoint sets; state, not an id high-water
// mark, decides eligibility, so entries committed out of id order are never
// skipped. $8 asks for the processed-key probe (false when none of the
// relay's handlers uses processed keys).
//
// Sizes are checked here, so that the relay never fetches more than it may
// hold. An entry whose payload is over $9 bytes or whose headers are over
// $10 (their JSON text; 0 means no limit) is claimed like any other but
// returned without its payload and headers, only their sizes: the relay
// dead-letters it. The others are claimed in order only while their bytes
// add up to at most $11 (0: no budget); the first always is. Rows picked
// beyond the budget stay pending, and their row locks end with the
// statement; every row returns how many were picked, so that the caller
// knows the claim was cut short and claims again at once.
const sqlClaim = `
WITH picked AS (
	SELECT e.id, e.priority, e.run_at,
		octet_length(e.payload::text) AS payload_bytes,
		octet_length(e.headers::text) AS headers_bytes
	FROM outbox_entries e
	WHERE e.state = 'pending'
	  AND e.queue = $1::text
	  AND e.topic = ANY($2::text[])
	  AND e.run_at <= coalesce($3::timestamptz, now())
	  AND (e.ordering_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM outbox_entries p
		WHERE p.ordering_key = e.ordering_key
		  AND p.id < e.id
		  AND p.state <> 'done'
		  AND (p.state <> 'dead' OR $7::bool)))
	ORDER BY e.priority DESC, e.run_at, e.id
	LIMIT $4
	FOR UPDATE SKIP LOCKED
),
sized AS (
	SELECT s.*, sum(CASE WHEN s.fits THEN s.payload_bytes + s.headers_bytes ELSE 0 END)
		OVER (ORDER BY s.priority DESC, s.run_at, s.id ROWS UNBOUNDED PRECEDING) AS running_bytes,
		row_number() OVER (ORDER BY s.priority DESC, s.run_at, s.id) AS n,
		count(*) OVER () AS picked_count
	FROM (SELECT p.*, ($9::int = 0 OR p.payload_bytes <= $9::int)
		AND ($10::int = 0 OR p.headers_bytes <= $10::int) AS fits FROM picked p) s
)
UPDATE outbox_entries e
SET state = 'running',
    attempt = e.attempt + 1,
    lease_until = coalesce($3::timestamptz, now()) + $5::bigint * interval '1 microsecond',
    lease_owner = $6::text
FROM sized s
WHERE e.id = s.id AND (s.n = 1 OR $11::bigint = 0 OR s.running_bytes <= $11::bigint)
RETURNING e.id, e.topic, e.key, e.ordering_key, e.queue, e.priority,
	e.attempt, e.attempt_base, e.max_attempts,
	CASE WHEN s.fits THEN e.payload END, CASE WHEN s.fits THEN e.headers END,
	s.payload_bytes, s.headers_bytes, s.picked_count,
	e.created_at, e.run_at, e.key_generated,
	-- A generated key cannot repeat: no probe. OFFSET 0 keeps the probe a
	-- per-row index lookup: as a hashed subplan it would read the whole
	-- keys table on every claim.
	CASE WHEN e.key_generated OR NOT $8::bool THEN false
	ELSE EXISTS (SELECT 1 FROM outbox_processed_keys k WHERE k.scope = e.topic AND k.key = e.key OFFSET 0) END`

// sqlProducersQuiet reports whether no transaction inserting into queue $1
// is between the start of its commit and the moment its entries become
// visible: the schema's trigger (version 5) holds advisory lock (7310533,
// hashtext(queue)) in shared mode for that span, and an exclusive try-lock
// succeeds only when nobody holds it. The lock is taken at session level and
// released within the statement (CASE evaluates the unlock only after the
// lock was got), so it is held for no longer than the statement even when
// the statement shares an implicit transaction with the claim that follows
// it in a pipeline, and nothing is left on a pooled session; a producer that
// asks for it meanwhile waits for that instant only. A claim that starts
// after this returned true sees every entry of a producer that skipped its
// notification because an earlier one was notifying (docs/schema.md).
const sqlProducersQuiet = `SELECT CASE WHEN pg_try_advisory_lock(7310533, hashtext($1::text))
	THEN pg_advisory_unlock(7310533, hashtext($1::text)) ELSE false END`

// sqlHandBackUnknown returns to pending the running entries of queue $1
// leased under owner $2 other than ids $3: after a claim whose result the
// relay never received (the statement may have committed), those are
// entries leased to a relay that does not know it holds them. Nothing ran
// them, so the attempt does not count (attempt_base moves with it, as at a
// hand-back). The partial lease index holds only running entries.
const sqlHandBackUnknown = `
UPDATE outbox_entries e
SET state = 'pending',
    attempt_base = e.attempt_base + 1,
    lease_until = NULL,
    lease_owner = NULL
WHERE e.state = 'running' AND e.queue = $1::text AND e.lease_owner = $2::text
  AND e.id <> ALL($3::bigint[])
RETURNING e.id`

// NotifyChannel is the channel on which the schema's insert trigger (and
// outbox.Replay) wake relays; the payload is a queue name.
const NotifyChannel = "txoutbox"

// ProgressChannel is the channel on which the relay's statements announce
// entries whose state changed (finished, retried, handed back, rescued): the
// payload is their ids, comma-separated. outbox.Watcher listens on it.
const ProgressChannel = "txoutbox_progress"

// notifyProgress is a CTE named "notified" that sends the ids of the CTE
// "upd" on ProgressChannel: one notification per 300 ids (at most 6,000
// bytes; Postgres caps a payload at 8,000), so a batch of outcomes costs a
// notification or a few, not one per entry. Postgres delivers them at
// commit. The statement must read "notified" for it to run.
const notifyProgress = `notified AS (
	SELECT pg_notify('` + ProgressChannel + `', string_agg(c.id::text, ',' ORDER BY c.id))
	FROM (SELECT u.id, (row_number() OVER (ORDER BY u.id) - 1) / 300 AS chunk FROM upd u) c
	GROUP BY c.chunk
)`

// sqlComplete applies a batch of outcomes, each fenced by its attempt: a row
// whose attempt moved on (re-claimed) or that is no longer running (rescued)
// is left alone. Done entries that asked for it record their processed key in
// the same statement, and the applied ids are announced on ProgressChannel.
// Returns the ids that were applied.
const sqlComplete = `
WITH input AS (
	SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::bigint[],
		$6::text[], $7::text[], $8::bool[], $9::bool[])
		AS t(id, attempt, state, delay_us, error, result, handback, record_key)
),
upd AS (
	UPDATE outbox_entries e
	SET state = i.state,
	    run_at = CASE WHEN i.state = 'pending'
	        THEN coalesce($1::timestamptz, now()) + i.delay_us * interval '1 microsecond'
	        ELSE e.run_at END,
	    finished_at = CASE WHEN i.state IN ('done', 'dead') THEN coalesce($1::timestamptz, now()) END,
	    attempt_base = e.attempt_base + CASE WHEN i.handback THEN 1 ELSE 0 END,
	    last_error = coalesce(i.error, e.last_error),
	    result = coalesce(i.result::jsonb, e.result),
	    lease_until = NULL,
	    lease_owner = NULL
	FROM input i
	WHERE e.id = i.id AND e.attempt = i.attempt AND e.state = 'running'
	RETURNING e.id, e.topic, e.key, e.state, e.result, i.record_key
),
keys AS (
	INSERT INTO outbox_processed_keys (scope, key, entry_id, processed_at, result)
	SELECT u.topic, u.key, u.id, coalesce($1::timestamptz, now()), u.result
	FROM upd u WHERE u.state = 'done' AND u.record_key
	ON CONFLICT (scope, key) DO NOTHING
),
` + notifyProgress + `
SELECT id FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// sqlCompleteDone is sqlComplete for the common batch: every outcome a
// success without a result. It ships three arrays instead of eight and
// updates only what a success changes.
const sqlCompleteDone = `
WITH input AS (
	SELECT * FROM unnest($2::bigint[], $3::int[], $4::bool[]) AS t(id, attempt, record_key)
),
upd AS (
	UPDATE outbox_entries e
	SET state = 'done',
	    finished_at = coalesce($1::timestamptz, now()),
	    lease_until = NULL,
	    lease_owner = NULL
	FROM input i
	WHERE e.id = i.id AND e.attempt = i.attempt AND e.state = 'running'
	RETURNING e.id, e.topic, e.key, i.record_key
),
keys AS (
	INSERT INTO outbox_processed_keys (scope, key, entry_id, processed_at)
	SELECT u.topic, u.key, u.id, coalesce($1::timestamptz, now())
	FROM upd u WHERE u.record_key
	ON CONFLICT (scope, key) DO NOTHING
),
` + notifyProgress + `
SELECT id FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// sqlCompleteOne is sqlComplete's single-row form, for the transactional
// handler's own transaction (the processed key is recorded before the
// handler runs, in that transaction; the progress notification goes out
// when it commits). Returns the number of rows completed, 0 or 1.
const sqlCompleteOne = `
WITH upd AS (
	UPDATE outbox_entries e
	SET state = 'done',
	    finished_at = coalesce($1::timestamptz, now()),
	    result = coalesce($4::jsonb, e.result),
	    lease_until = NULL,
	    lease_owner = NULL
	WHERE e.id = $2 AND e.attempt = $3 AND e.state = 'running'
	RETURNING e.id
),
` + notifyProgress + `
SELECT count(*) FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// sqlMarkProcessed records scope+key as processed; no row comes back when
// it already was. Inside a transaction the row lock also serialises two
// concurrent runs of the same scope+key.
const sqlMarkProcessed = `
INSERT INTO outbox_processed_keys (scope, key, entry_id, processed_at, result)
VALUES ($2, $3, $4, coalesce($1::timestamptz, now()), $5::jsonb)
ON CONFLICT (scope, key) DO NOTHING
RETURNING true`

// sqlSetProcessedResult stores the handler's result on a processed key
// recorded earlier in the same transaction.
const sqlSetProcessedResult = `
UPDATE outbox_processed_keys SET result = $3::jsonb WHERE scope = $1 AND key = $2`

// sqlRenew extends the leases of entries this relay still holds, fenced by
// attempt; ids missing from the result have lost their lease.
const sqlRenew = `
UPDATE outbox_entries e
SET lease_until = coalesce($1::timestamptz, now()) + $2::bigint * interval '1 microsecond'
FROM unnest($3::bigint[], $4::int[]) AS i(id, attempt)
WHERE e.id = i.id AND e.attempt = i.attempt AND e.state = 'running'
RETURNING e.id`

// sqlRescue returns entries whose lease expired to pending (or dead, when
// that was their last attempt), and announces them on ProgressChannel. The
// attempt stays counted: an entry that crashes its relay every time still
// reaches its limit.
const sqlRescue = `
WITH expired AS (
	SELECT id FROM outbox_entries
	WHERE state = 'running' AND lease_until < coalesce($1::timestamptz, now())
	ORDER BY lease_until
	LIMIT $2
	FOR UPDATE SKIP LOCKED
),
upd AS (
	UPDATE outbox_entries e
	SET state = CASE WHEN e.attempt - e.attempt_base >= e.max_attempts THEN 'dead' ELSE 'pending' END,
	    run_at = coalesce($1::timestamptz, now()),
	    finished_at = CASE WHEN e.attempt - e.attempt_base >= e.max_attempts
	        THEN coalesce($1::timestamptz, now()) END,
	    last_error = format('lease expired: relay %s stopped renewing it during attempt %s',
	        coalesce(e.lease_owner, '?'), e.attempt - e.attempt_base),
	    lease_until = NULL,
	    lease_owner = NULL
	FROM expired
	WHERE e.id = expired.id
	RETURNING e.id, e.topic, e.queue, e.state
),
` + notifyProgress + `
SELECT id, topic, queue, state FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// sqlDeleteFinished deletes up to $3 entries in state $1 that finished more
// than $4 microseconds before $2 (nullable now).
const sqlDeleteFinished = `
WITH doomed AS (
	SELECT id FROM outbox_entries
	WHERE state = $1::text
	  AND finished_at < coalesce($2::timestamptz, now()) - $4::bigint * interval '1 microsecond'
	ORDER BY finished_at
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox_entries e USING doomed WHERE e.id = doomed.id`

// sqlDeleteProcessedKeys deletes up to $2 processed keys recorded more than
// $3 microseconds before $1 (nullable now).
const sqlDeleteProcessedKeys = `
DELETE FROM outbox_processed_keys k
WHERE (k.scope, k.key) IN (
	SELECT scope, key FROM outbox_processed_keys
	WHERE processed_at < coalesce($1::timestamptz, now()) - $3::bigint * interval '1 microsecond'
	ORDER BY processed_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED)`

// sqlUnhandled lists topics and queues of pending entries, due for more
// than $4 microseconds before $3 (nullable now), that no handler in $1/$2
// takes. It reads a bounded sample through the claim index: the distinct
// queues by a loose index scan, then the first 1,000 due entries of each
// in claim order. An entry no relay takes stays at the front of its queue's
// order, so it shows up in the sample once the entries ahead of it are
// done. (A scan of every pending entry took 109 ms at 1,000,000 of them.)
const sqlUnhandled = `
WITH RECURSIVE queues(queue) AS (
	(SELECT queue FROM outbox_entries WHERE state = 'pending' ORDER BY queue LIMIT 1)
	UNION ALL
	SELECT (SELECT e.queue FROM outbox_entries e
	        WHERE e.state = 'pending' AND e.queue > q.queue ORDER BY e.queue LIMIT 1)
	FROM queues q WHERE q.queue IS NOT NULL
)
SELECT s.topic, s.queue, count(*)
FROM queues q
CROSS JOIN LATERAL (
	SELECT e.topic, e.queue FROM outbox_entries e
	WHERE e.state = 'pending' AND e.queue = q.queue
	  AND e.run_at <= coalesce($3::timestamptz, now()) - $4::bigint * interval '1 microsecond'
	ORDER BY e.priority DESC, e.run_at, e.id
	LIMIT 1000
) s
WHERE q.queue IS NOT NULL
  AND NOT (s.topic = ANY($1::text[]) AND s.queue = ANY($2::text[]))
GROUP BY s.topic, s.queue
ORDER BY s.topic, s.queue`

// sqlTableHealth reads the statistics system's live and dead row versions
// of outbox_entries, and whether the current role may VACUUM it (its owner,
// a member of the owning role, a superuser, or from PostgreSQL 17 a holder
// of the MAINTAIN privilege).
const sqlTableHealth = `
SELECT coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0),
	pg_has_role(c.relowner, 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
	OR CASE WHEN current_setting('server_version_num')::int >= 170000
		THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = 'outbox_entries'::regclass`

// sqlTryVacuumLock takes the session advisory lock that lets one relay at a
// time vacuum outbox_entries. Key spaces: 7310531 is the schema's
// notification lock (version 4), 7310532 the relays', 7310533 the
// producers' commit lock (version 5).
const sqlTryVacuumLock = `SELECT pg_try_advisory_lock(7310532, 1)`
const sqlVacuumUnlock = `SELECT pg_advisory_unlock(7310532, 1)`

// sqlVacuum removes dead row versions and their index entries: the claim
// index keeps one for every entry claimed until VACUUM, and every claim
// walks past those of its queue's oldest entries.
const sqlVacuum = `VACUUM (INDEX_CLEANUP ON) outbox_entries`

// sqlVacuumThrottle and sqlVacuumUnthrottle wrap sqlVacuum in autovacuum's
// default cost-based delay, on the session that runs it.
// The application's statement_timeout, if any, would cancel a throttled
// VACUUM of a large table every time: it is lifted for that session.
const (
	sqlVacuumThrottle   = `SELECT set_config('vacuum_cost_delay', '2ms', false), set_config('statement_timeout', '0', false)`
	sqlVacuumUnthrottle = `RESET vacuum_cost_delay`
	sqlVacuumUntimeout  = `RESET statement_timeout`
)

// sqlCheckSchema fails with undefined_table or undefined_column when the
// migrations the relay needs up to version 3 have not run, and returns
// whether version 5 has (its headers constraint exists): the relay's
// wake-up relies on version 5's trigger.
const sqlCheckSchema = `
SELECT (SELECT count(*) FROM (SELECT key_generated FROM outbox_entries LIMIT 0) a)
	+ (SELECT count(*) FROM (SELECT 1 FROM outbox_processed_keys LIMIT 0) b) = 0
	AND EXISTS (SELECT 1 FROM pg_constraint
		WHERE conrelid = 'outbox_entries'::regclass AND conname = 'outbox_entries_headers_check')`
