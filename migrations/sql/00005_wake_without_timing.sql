-- txoutbox schema, version 5: a wake-up that does not depend on timing, and
-- headers the database checks.
--
-- Since version 4 only one transaction per queue at a time sends the NOTIFY
-- that wakes relays (the one holding advisory lock (7310531, hashtext(queue))
-- while it commits); the others skip theirs. A skipping transaction may
-- become visible only after the woken relay has claimed, and version 4 left
-- such entries to claims 10 ms and 50 ms after the wake-up, or to the poll.
--
-- Now every inserting transaction also holds a SHARED advisory lock
-- (7310533, hashtext(queue)) from the moment its commit begins (this deferred
-- trigger) until its commit is visible (Postgres releases transaction locks
-- after the commit is visible to new snapshots). A skipping transaction takes
-- it before it tries the notify lock, so it holds it from before the notifier
-- commits until its own commit is visible. A woken relay asks, before a
-- claim, whether anyone holds the shared lock (an exclusive try-lock taken
-- and released at once); when nobody does, every transaction that skipped
-- its notification is already visible to that claim. When someone does, the
-- relay asks again shortly, until nobody does. See docs/schema.md.
--
-- Also: headers must be a JSON object of string values, as outbox.WithHeaders
-- writes them. Plain SQL inserts of anything else now fail at once with a
-- check violation naming the constraint, instead of reaching the relay. The
-- constraint is NOT VALID, so adding it does not scan the table; but
-- Postgres checks it on every UPDATE too, and the relay updates pending,
-- running and dead entries (claims, outcomes, replays). So such entries
-- written before are converted here, under the lock that adding the
-- constraint takes (no producer inserts meanwhile), found through the
-- partial indexes of those states: non-string values become their JSON
-- text, exactly as the relay handed them to handlers before, and headers
-- that are not an object are kept, as text, under the single header
-- "txoutbox_original_headers" (the relay used to ignore them). Done entries
-- are never updated again and stay as they are.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_entries_notify_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Held until this transaction's commit is visible; relays wait for it
    -- to be released before concluding that no entry is on its way.
    PERFORM pg_advisory_xact_lock_shared(7310533, hashtext(NEW.queue));
    -- Re-entrant: later rows of the same transaction and queue take the
    -- branch again, and Postgres folds their identical notifications.
    IF pg_try_advisory_xact_lock(7310531, hashtext(NEW.queue)) THEN
        PERFORM pg_notify('txoutbox', NEW.queue);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

ALTER TABLE outbox_entries ADD CONSTRAINT outbox_entries_headers_check CHECK (
    jsonb_typeof(headers) = 'object'
    AND (headers = '{}'::jsonb OR NOT jsonb_path_exists(headers, 'strict $.* ? (@.type() != "string")'))
) NOT VALID;

-- +goose StatementBegin
CREATE FUNCTION pg_temp.txoutbox_string_headers(h jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(h) = 'object' THEN
        (SELECT coalesce(jsonb_object_agg(j.k,
                CASE WHEN jsonb_typeof(j.v) = 'string' THEN j.v ELSE to_jsonb(j.v::text) END), '{}'::jsonb)
         FROM jsonb_each(h) AS j(k, v))
    ELSE jsonb_build_object('txoutbox_original_headers', h::text) END
$$;
-- +goose StatementEnd

UPDATE outbox_entries SET headers = pg_temp.txoutbox_string_headers(headers)
WHERE state = 'pending' AND headers <> '{}'::jsonb
  AND (jsonb_typeof(headers) <> 'object' OR jsonb_path_exists(headers, 'strict $.* ? (@.type() != "string")'));
UPDATE outbox_entries SET headers = pg_temp.txoutbox_string_headers(headers)
WHERE state = 'running' AND headers <> '{}'::jsonb
  AND (jsonb_typeof(headers) <> 'object' OR jsonb_path_exists(headers, 'strict $.* ? (@.type() != "string")'));
UPDATE outbox_entries SET headers = pg_temp.txoutbox_string_headers(headers)
WHERE state = 'dead' AND headers <> '{}'::jsonb
  AND (jsonb_typeof(headers) <> 'object' OR jsonb_path_exists(headers, 'strict $.* ? (@.type() != "string")'));
DROP FUNCTION pg_temp.txoutbox_string_headers(jsonb);

-- +goose Down
ALTER TABLE outbox_entries DROP CONSTRAINT IF EXISTS outbox_entries_headers_check;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_entries_notify_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Re-entrant: later rows of the same transaction and queue take the
    -- branch again, and Postgres folds their identical notifications.
    IF pg_try_advisory_xact_lock(7310531, hashtext(NEW.queue)) THEN
        PERFORM pg_notify('txoutbox', NEW.queue);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
