package outbox

// All SQL of the producer side lives in this file, to be reviewed as SQL.

import "github.com/txoutbox/txoutbox/internal/store"

// sqlInsertOne inserts one entry and returns (id, false). On a topic+key
// conflict it returns the existing entry's id with dup = true, or a NULL id
// with dup = true when the conflicting entry committed after this
// statement's snapshot (the caller then reads it with sqlSelectIDByKey).
const sqlInsertOne = `
WITH ins AS (
	INSERT INTO outbox_entries
		(topic, payload, key, key_generated, ordering_key, queue, priority, max_attempts, run_at, headers)
	VALUES (
		$1::text, $2::jsonb, $3::text, $11::bool,
		$4::text, $5::text, $6::smallint, $7::int,
		coalesce($8::timestamptz, now() + $9::bigint * interval '1 microsecond'),
		$10::jsonb)
	ON CONFLICT DO NOTHING
	RETURNING id
)
SELECT coalesce(
		(SELECT id FROM ins),
		(SELECT e.id FROM outbox_entries e WHERE e.topic = $1::text AND e.key = $3::text)),
	NOT EXISTS (SELECT FROM ins)`

const sqlSelectIDByKey = `SELECT id FROM outbox_entries WHERE topic = $1 AND key = $2`

// sqlInsertBatch inserts many entries from parallel arrays in one statement
// and returns, as JSON, one {ord, id, dup} object per input, in input order.
const sqlInsertBatch = `
WITH input AS MATERIALIZED (
	SELECT t.ord, t.topic, t.payload::jsonb AS payload,
		t.key, t.key_generated,
		t.ordering_key, t.queue, t.priority, t.max_attempts,
		coalesce(t.run_at, now() + t.delay_us * interval '1 microsecond') AS run_at,
		t.headers::jsonb AS headers
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
		$6::smallint[], $7::int[], $8::timestamptz[], $9::bigint[], $10::text[], $11::bool[])
		WITH ORDINALITY AS t(topic, payload, key, ordering_key, queue,
			priority, max_attempts, run_at, delay_us, headers, key_generated, ord)
),
ins AS (
	INSERT INTO outbox_entries
		(topic, payload, key, key_generated, ordering_key, queue, priority, max_attempts, run_at, headers)
	SELECT topic, payload, key, key_generated, ordering_key, queue, priority, max_attempts, run_at, headers
	FROM input ORDER BY ord
	ON CONFLICT DO NOTHING
	RETURNING id, topic, key
),
firsts AS (
	SELECT DISTINCT ON (topic, key) ord, topic, key FROM input ORDER BY topic, key, ord
)
SELECT coalesce(json_agg(json_build_object(
		'ord', i.ord,
		-- A correlated lookup, evaluated only for items that inserted
		-- nothing: a join here may be planned (with stale statistics, or
		-- as a generic plan cached while the table was small) as a
		-- sequential scan of the whole table on every batch.
		'id', coalesce(ins.id,
			(SELECT e.id FROM outbox_entries e WHERE e.topic = i.topic AND e.key = i.key)),
		'dup', NOT (ins.id IS NOT NULL AND f.ord = i.ord))
	ORDER BY i.ord), '[]')::text
FROM input i
LEFT JOIN ins ON ins.topic = i.topic AND ins.key = i.key
LEFT JOIN firsts f ON f.topic = i.topic AND f.key = i.key`

// entryJSON is the JSON object every read of an entry returns.
const entryJSON = `json_build_object(
	'id', e.id, 'topic', e.topic, 'key', e.key, 'ordering_key', e.ordering_key,
	'queue', e.queue, 'priority', e.priority, 'state', e.state,
	'attempt', e.attempt - e.attempt_base, 'max_attempts', e.max_attempts,
	'run_at', e.run_at, 'lease_until', e.lease_until, 'lease_owner', e.lease_owner,
	'last_error', e.last_error,
	'headers', (SELECT coalesce(jsonb_object_agg(h.k, h.v), '{}'::jsonb)
		FROM jsonb_each_text(CASE WHEN jsonb_typeof(e.headers) = 'object' THEN e.headers ELSE '{}'::jsonb END) AS h(k, v)),
	'result', e.result,
	'payload', e.payload, 'created_at', e.created_at, 'finished_at', e.finished_at)`

const sqlGetByID = `SELECT ` + entryJSON + `::text FROM outbox_entries e WHERE e.id = $1`

const sqlGetByKey = `SELECT ` + entryJSON + `::text FROM outbox_entries e WHERE e.topic = $1 AND e.key = $2`

// sqlListDead lists dead entries, newest first, optionally of one topic,
// with keyset pagination on id.
const sqlListDead = `
SELECT coalesce(json_agg(x.j ORDER BY x.id DESC), '[]')::text FROM (
	SELECT e.id, ` + entryJSON + ` AS j
	FROM outbox_entries e
	WHERE e.state = 'dead'
	  AND ($1::text IS NULL OR e.topic = $1::text)
	  AND ($2::bigint IS NULL OR e.id < $2::bigint)
	ORDER BY e.id DESC
	LIMIT $3
) x`

// sqlReplay returns dead entries to pending with a fresh set of attempts
// (attempt_base catches up with attempt, so the fencing token keeps
// growing), and wakes relays for each affected queue.
const sqlReplay = `
WITH upd AS (
	UPDATE outbox_entries e
	SET state = 'pending', attempt_base = e.attempt, run_at = now(),
	    finished_at = NULL, lease_until = NULL, lease_owner = NULL
	WHERE e.state = 'dead'
	  AND (($1::bigint[] IS NOT NULL AND e.id = ANY($1::bigint[]))
	    OR ($2::text IS NOT NULL AND e.topic = $2::text)
	    OR ($3::bool AND $1::bigint[] IS NULL AND $2::text IS NULL))
	RETURNING e.id, e.queue
),
woken AS (
	SELECT pg_notify('` + store.NotifyChannel + `', q.queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM woken)`

// sqlDiscard deletes dead entries.
const sqlDiscard = `
WITH del AS (
	DELETE FROM outbox_entries e
	WHERE e.state = 'dead'
	  AND (($1::bigint[] IS NOT NULL AND e.id = ANY($1::bigint[]))
	    OR ($2::text IS NOT NULL AND e.topic = $2::text)
	    OR ($3::bool AND $1::bigint[] IS NULL AND $2::text IS NULL))
	RETURNING 1
)
SELECT count(*) FROM del`

// sqlCountDead counts the dead entries a selection names, for a dry run of
// sqlReplay or sqlDiscard: its WHERE clause is theirs, word for word, so
// that the count is what they would change at this moment. It reads dead
// entries through outbox_entries_finished_idx (state, finished_at); a plan
// made for given ids reads the primary key instead.
const sqlCountDead = `
SELECT count(*) FROM outbox_entries e
WHERE e.state = 'dead'
  AND (($1::bigint[] IS NOT NULL AND e.id = ANY($1::bigint[]))
    OR ($2::text IS NOT NULL AND e.topic = $2::text)
    OR ($3::bool AND $1::bigint[] IS NULL AND $2::text IS NULL))`

// sqlStats aggregates per topic and queue, each part reading through the
// partial index for its state.
const sqlStats = `
WITH parts AS (
	SELECT topic, queue,
		count(*) AS pending,
		count(*) FILTER (WHERE run_at <= now()) AS due,
		count(*) FILTER (WHERE attempt > attempt_base) AS retrying,
		0::bigint AS running, 0::bigint AS dead, 0::bigint AS done_1h, 0::bigint AS dead_1h,
		extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())) AS oldest
	FROM outbox_entries WHERE state = 'pending' GROUP BY topic, queue
	UNION ALL
	SELECT topic, queue, 0, 0, 0, count(*), 0, 0, 0, NULL
	FROM outbox_entries WHERE state = 'running' GROUP BY topic, queue
	UNION ALL
	SELECT topic, queue, 0, 0, 0, 0,
		count(*) FILTER (WHERE state = 'dead'),
		count(*) FILTER (WHERE state = 'done' AND finished_at > now() - interval '1 hour'),
		count(*) FILTER (WHERE state = 'dead' AND finished_at > now() - interval '1 hour'),
		NULL
	FROM outbox_entries
	WHERE state = 'dead' OR (state = 'done' AND finished_at > now() - interval '1 hour')
	GROUP BY topic, queue
)
SELECT coalesce(json_agg(json_build_object(
		'topic', topic, 'queue', queue,
		'pending', pending, 'due', due, 'retrying', retrying, 'running', running,
		'dead', dead, 'done_last_hour', done_1h, 'dead_last_hour', dead_1h,
		'oldest_due_seconds', coalesce(oldest, 0))
	ORDER BY topic, queue), '[]')::text
FROM (
	SELECT topic, queue, sum(pending)::bigint AS pending, sum(due)::bigint AS due,
		sum(retrying)::bigint AS retrying, sum(running)::bigint AS running,
		sum(dead)::bigint AS dead, sum(done_1h)::bigint AS done_1h, sum(dead_1h)::bigint AS dead_1h,
		max(oldest) AS oldest
	FROM parts GROUP BY topic, queue
) s`

// sqlListByCorrelation lists the entries whose correlation_id header is $1,
// oldest first, through the partial index outbox_entries_correlation_idx
// (schema version 3), whose predicate the query repeats.
const sqlListByCorrelation = `
SELECT coalesce(json_agg(x.j ORDER BY x.id), '[]')::text FROM (
	SELECT e.id, ` + entryJSON + ` AS j
	FROM outbox_entries e
	WHERE e.headers ? 'correlation_id' AND e.headers->>'correlation_id' = $1::text
	ORDER BY e.id
	LIMIT $2
) x`

// sqlGetMany reads the entries with the ids $1 (primary key lookups).
const sqlGetMany = `
SELECT coalesce(json_agg(` + entryJSON + ` ORDER BY e.id), '[]')::text
FROM outbox_entries e WHERE e.id = ANY($1::bigint[])`

// sqlCorrelationsOf maps the ids $1 (primary key lookups) to their
// correlation ids, for those that have one.
const sqlCorrelationsOf = `
SELECT coalesce(json_object_agg(e.id::text, e.headers->>'correlation_id'), '{}')::text
FROM outbox_entries e
WHERE e.id = ANY($1::bigint[]) AND e.headers->>'correlation_id' IS NOT NULL`
