package dashboard

// All SQL of the dashboard lives in this file, to be reviewed as SQL. Every
// statement reads through the partial indexes the relay uses (state
// 'running' by lease, finished entries by state and finish time, dead
// entries by id); none scans the done entries beyond the window.

// sqlWindow aggregates the entries that finished in the last $1
// microseconds: per topic and queue (done, dead, attempts used), and per
// minute ago (0 is the current minute) for the throughput chart.
const sqlWindow = `
WITH fin AS (
	SELECT topic, queue, state, attempt - attempt_base AS attempts,
		floor(extract(epoch FROM now() - finished_at) / 60)::int AS minute
	FROM outbox_entries
	WHERE state IN ('done', 'dead')
	  AND finished_at > now() - $1::bigint * interval '1 microsecond'
)
SELECT json_build_object(
	'now', now(),
	'topics', (SELECT coalesce(json_agg(t ORDER BY t.topic, t.queue), '[]') FROM (
		SELECT topic, queue,
			count(*) FILTER (WHERE state = 'done') AS done,
			count(*) FILTER (WHERE state = 'dead') AS dead,
			coalesce(sum(attempts), 0) AS attempts
		FROM fin GROUP BY topic, queue) t),
	'minutes', (SELECT coalesce(json_agg(m ORDER BY m.minute), '[]') FROM (
		SELECT minute,
			count(*) FILTER (WHERE state = 'done') AS done,
			count(*) FILTER (WHERE state = 'dead') AS dead
		FROM fin GROUP BY minute) m)
)::text`

// sqlRunning lists up to $1 running entries, soonest lease expiry first.
const sqlRunning = `
SELECT coalesce(json_agg(json_build_object(
		'id', e.id, 'topic', e.topic, 'queue', e.queue,
		'attempt', e.attempt - e.attempt_base, 'max_attempts', e.max_attempts,
		'lease_owner', e.lease_owner, 'lease_until', e.lease_until,
		'lease_left_seconds', extract(epoch FROM e.lease_until - now()))
	ORDER BY e.lease_until, e.id), '[]')::text
FROM (
	SELECT * FROM outbox_entries
	WHERE state = 'running'
	ORDER BY lease_until, id
	LIMIT $1
) e`

// sqlDead lists up to $3 dead entries, newest first, optionally of topic
// $1 and below id $2 (paging), without payloads and with the error cut to
// $4 characters.
const sqlDead = `
SELECT coalesce(json_agg(json_build_object(
		'id', e.id, 'topic', e.topic, 'queue', e.queue, 'key', e.key,
		'attempt', e.attempt - e.attempt_base, 'max_attempts', e.max_attempts,
		'finished_at', e.finished_at,
		'error', left(e.last_error, $4), 'error_cut', length(e.last_error) > $4)
	ORDER BY e.id DESC), '[]')::text
FROM (
	SELECT * FROM outbox_entries
	WHERE state = 'dead'
	  AND ($1::text IS NULL OR topic = $1::text)
	  AND ($2::bigint IS NULL OR id < $2::bigint)
	ORDER BY id DESC
	LIMIT $3
) e`
