package schedule

// All SQL of the scheduler lives in this file, to be reviewed as SQL. The
// table is created by migration 00002_schedules.sql.

// sqlCheckSchema fails with undefined_table when the migration has not run.
const sqlCheckSchema = `SELECT count(*) FROM (SELECT 1 FROM outbox_schedules LIMIT 0) s`

// sqlRead returns, for each registered name, how far the schedule has been
// decided (NULL when it has no row yet), and the database clock.
const sqlRead = `
SELECT n.name, s.evaluated_until, now()
FROM unnest($1::text[]) AS n(name)
LEFT JOIN outbox_schedules s ON s.name = n.name`

// sqlCreate records a schedule the first time any scheduler sees it: every
// period up to now counts as decided, so that nothing before the first
// evaluation fires.
const sqlCreate = `
INSERT INTO outbox_schedules
	(name, topic, timing, zone, missed_policy, evaluated_until, next_period, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7, $6::timestamptz, $6::timestamptz)
ON CONFLICT (name) DO NOTHING`

// sqlLock takes the schedule's row for the rest of the transaction. A row
// another scheduler holds is skipped, not waited for: that scheduler is
// firing the schedule right now.
const sqlLock = `SELECT evaluated_until FROM outbox_schedules WHERE name = $1 FOR UPDATE SKIP LOCKED`

// sqlAdvance records an evaluation that decided the periods up to $6, in
// the transaction that enqueued the periods it fired ($8..$10, NULL when
// it fired none).
const sqlAdvance = `
UPDATE outbox_schedules SET
	topic = $2, timing = $3, zone = $4, missed_policy = $5,
	evaluated_until = greatest(evaluated_until, $6::timestamptz),
	next_period = $7,
	updated_at = $6::timestamptz,
	last_period = coalesce($8::timestamptz, last_period),
	last_key = coalesce($9::text, last_key),
	last_entry_id = coalesce($10::bigint, last_entry_id),
	last_fired_at = CASE WHEN $8::timestamptz IS NULL THEN last_fired_at ELSE $6::timestamptz END
WHERE name = $1`

// sqlList returns every schedule's row as JSON, by name.
const sqlList = `
SELECT coalesce(json_agg(json_build_object(
		'name', s.name, 'topic', s.topic, 'timing', s.timing, 'zone', s.zone,
		'missed_policy', s.missed_policy, 'evaluated_until', s.evaluated_until,
		'next_period', s.next_period, 'last_period', s.last_period,
		'last_key', s.last_key, 'last_entry_id', s.last_entry_id,
		'last_fired_at', s.last_fired_at, 'created_at', s.created_at,
		'updated_at', s.updated_at)
	ORDER BY s.name), '[]')::text
FROM outbox_schedules s`
