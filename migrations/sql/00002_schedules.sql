-- txoutbox schema, version 2: recurring schedules (package schedule).
--
-- One row per schedule name: how far its periods are decided (enqueued or
-- passed over by its missed-period policy), and what it last enqueued. Every
-- scheduler of a database reads and advances these rows; the row lock taken
-- while a period is enqueued, in the same transaction as the entry, is what
-- makes each period fire once however many schedulers run, and it outlives
-- the retention of done entries and processed keys. See docs/schedules.md.

-- +goose Up
-- +goose StatementBegin
CREATE TABLE outbox_schedules (
    name            text        PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    topic           text        NOT NULL CHECK (topic <> '' AND length(topic) <= 255),
    timing          text        NOT NULL,
    zone            text        NOT NULL,
    missed_policy   text        NOT NULL CHECK (missed_policy IN ('latest', 'skip', 'all')),
    evaluated_until timestamptz NOT NULL,
    next_period     timestamptz,
    last_period     timestamptz,
    last_key        text,
    last_entry_id   bigint,
    last_fired_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- +goose StatementEnd

COMMENT ON TABLE outbox_schedules IS 'txoutbox recurring schedules; see docs/schedules.md.';
COMMENT ON COLUMN outbox_schedules.evaluated_until IS 'Every period up to this instant is decided: enqueued, or passed over by the missed-period policy.';
COMMENT ON COLUMN outbox_schedules.timing IS 'The cron expression (evaluated in zone) or @every interval, as the last scheduler that wrote the row defined it.';

-- +goose Down
DROP TABLE IF EXISTS outbox_schedules;
