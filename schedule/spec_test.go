package schedule_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/schedule"
)

// byField is a message whose topic depends on its value: its zero value
// names none.
type byField struct {
	T string `json:"t"`
}

func (b byField) Topic() string { return b.T }

// Invalid specs are refused at registration with a *SpecError naming the
// field, never accepted to fail (or panic) when they would fire.
func TestRegisterRefusesInvalidSpecs(t *testing.T) {
	t.Parallel()
	now := mustTime(t, "2026-06-01T12:00:00Z")
	s := register(t, schedule.Spec{Name: "taken", Every: time.Hour})
	long := strings.Repeat("n", schedule.MaxNameLen+1)
	for _, tc := range []struct {
		name    string
		spec    schedule.Spec
		field   string
		wrapped bool   // the parser's or the zone database's error is in the chain
		says    string // the message quotes this
	}{
		{"bad cron field", schedule.Spec{Name: "a", Cron: "61 * * * *"}, "Cron", true, `"61 * * * *"`},
		{"cron with four fields", schedule.Spec{Name: "a", Cron: "0 9 * *"}, "Cron", true, "not a cron expression"},
		{"cron garbage", schedule.Spec{Name: "a", Cron: "every monday"}, "Cron", true, "not a cron expression"},
		{"cron with seconds", schedule.Spec{Name: "a", Cron: "0 0 9 * * MON"}, "Cron", true, "not a cron expression"},
		{"cron with a zone prefix", schedule.Spec{Name: "a", Cron: "CRON_TZ=Europe/Berlin 0 9 * * *"}, "Cron", false, "give it in Zone"},
		{"cron @every", schedule.Spec{Name: "a", Cron: "@every 1h"}, "Cron", false, "use Every"},
		{"cron that never fires", schedule.Spec{Name: "a", Cron: "0 0 30 2 *"}, "Cron", false, "never fires"},
		{"unknown zone", schedule.Spec{Name: "a", Cron: "0 9 * * *", Zone: "Europe/Atlantis"}, "Zone", true, "Europe/Atlantis"},
		{"Local zone", schedule.Spec{Name: "a", Cron: "0 9 * * *", Zone: "Local"}, "Zone", false, "IANA"},
		{"neither cron nor every", schedule.Spec{Name: "a"}, "Cron", false, "give a cron expression"},
		{"both cron and every", schedule.Spec{Name: "a", Cron: "@daily", Every: time.Hour}, "Cron", false, "not both"},
		{"every below a second", schedule.Spec{Name: "a", Every: 500 * time.Millisecond}, "Every", false, "minimum"},
		{"every with a fraction", schedule.Spec{Name: "a", Every: 1500 * time.Millisecond}, "Every", false, "whole number"},
		{"every with a zone", schedule.Spec{Name: "a", Every: time.Hour, Zone: "Europe/Berlin"}, "Zone", false, "elapsed time"},
		{"anchor with a fraction", schedule.Spec{Name: "a", Every: time.Hour, Anchor: now.Add(time.Millisecond)}, "Anchor", false, "fraction"},
		{"anchor with cron", schedule.Spec{Name: "a", Cron: "@daily", Anchor: now}, "Anchor", false, "interval"},
		{"empty name", schedule.Spec{Every: time.Hour}, "Name", false, "empty"},
		{"long name", schedule.Spec{Name: long, Every: time.Hour}, "Name", false, "limit"},
		{"duplicate name", schedule.Spec{Name: "taken", Cron: "@daily"}, "Name", false, "already registered"},
		{"unknown policy", schedule.Spec{Name: "a", Every: time.Hour, Missed: 7}, "Missed", false, "unknown policy"},
		{"catch-up bound", schedule.Spec{Name: "a", Every: time.Hour, MaxCatchUp: schedule.MaxCatchUpLimit + 1}, "MaxCatchUp", false, "outside"},
		{"negative grace", schedule.Spec{Name: "a", Every: time.Hour, Grace: -time.Second}, "Grace", false, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := schedule.Register(s, tc.spec, buildTick)
			var se *schedule.SpecError
			if !errors.Is(err, schedule.ErrInvalidSpec) || !errors.As(err, &se) {
				t.Fatalf("Register = %v; want a *SpecError", err)
			}
			if se.Field != tc.field {
				t.Errorf("Field = %q, want %q (%v)", se.Field, tc.field, err)
			}
			if (errors.Unwrap(err) != nil) != tc.wrapped {
				t.Errorf("wrapped error = %v, want wrapped %v", errors.Unwrap(err), tc.wrapped)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("message %q does not say %q", err, tc.says)
			}
			// Preview validates the same way, without a database.
			if _, perr := schedule.Preview(tc.spec, now, 1); tc.field != "Name" && perr == nil {
				t.Errorf("Preview accepted what Register refused")
			}
		})
	}
	if got := s.Names(); len(got) != 1 || got[0] != "taken" {
		t.Errorf("registered %v after refusals; want only [taken]", got)
	}

	// Build functions and topics are checked too.
	if err := schedule.Register[tick](s, schedule.Spec{Name: "nil-build", Every: time.Hour}, nil); !errors.Is(err, schedule.ErrInvalidSpec) {
		t.Errorf("nil build: %v", err)
	}
	err := schedule.Register(s, schedule.Spec{Name: "no-topic", Every: time.Hour},
		func(context.Context, schedule.Period) (byField, error) { return byField{T: "x"}, nil })
	if !errors.Is(err, schedule.ErrInvalidSpec) || !strings.Contains(err.Error(), "topic") {
		t.Errorf("a type whose zero value names no topic: %v", err)
	}
	err = schedule.Register(s, schedule.Spec{Name: "iface", Every: time.Hour},
		func(context.Context, schedule.Period) (outbox.Message, error) { return tick{}, nil })
	if !errors.Is(err, schedule.ErrInvalidSpec) || !strings.Contains(err.Error(), "RegisterRaw") {
		t.Errorf("an interface message type: %v", err)
	}
	err = schedule.RegisterRaw(s, schedule.Spec{Name: "raw", Every: time.Hour}, "",
		func(context.Context, schedule.Period) (json.RawMessage, error) { return nil, nil })
	if !errors.Is(err, schedule.ErrInvalidSpec) {
		t.Errorf("RegisterRaw without a topic: %v", err)
	}
}

// New validates its Config, and seals the registry it is given.
func TestNewValidatesAndSeals(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	set := register(t, schedule.Spec{Name: "one", Every: time.Hour})
	for name, cfg := range map[string]schedule.Config{
		"no registry":      {},
		"empty registry":   {Schedules: schedule.NewSchedules()},
		"poll below 10ms":  {Schedules: set, PollInterval: time.Millisecond},
		"negative payload": {Schedules: set, Producer: outbox.Producer{MaxPayloadBytes: -1}},
	} {
		if _, err := schedule.New(db.Pool, cfg); !errors.Is(err, schedule.ErrInvalidConfig) {
			t.Errorf("%s: New = %v", name, err)
		}
	}
	if _, err := schedule.New(nil, schedule.Config{Schedules: set}); !errors.Is(err, schedule.ErrInvalidConfig) {
		t.Errorf("nil pool: %v", err)
	}
	s, err := schedule.New(db.Pool, schedule.Config{Schedules: set})
	if err != nil {
		t.Fatal(err)
	}
	if err := schedule.Register(set, schedule.Spec{Name: "two", Every: time.Hour}, buildTick); !errors.Is(err, schedule.ErrSealed) {
		t.Errorf("Register after New = %v", err)
	}
	// A sealed registry serves any number of schedulers.
	if _, err := schedule.New(db.Pool, schedule.Config{Schedules: set}); err != nil {
		t.Errorf("second New on the registry: %v", err)
	}
	if got := s.Names(); len(got) != 1 || got[0] != "one" || set.Len() != 1 {
		t.Errorf("names %v, len %d", got, set.Len())
	}
}

func formatAll(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The DST rules of docs/schedules.md, without a database.
func TestPreviewDSTRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cron, zone, after string
		want                    []string
	}{
		{
			// Spring forward in Berlin: 02:00 CET becomes 03:00 CEST.
			// 02:30 does not exist that night: it fires at 03:00.
			name: "daily in the spring gap", cron: "30 2 * * *", zone: "Europe/Berlin", after: "2026-03-27T12:00:00Z",
			want: []string{"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"},
		},
		{
			// Every hour: no real time is lost, nothing fires in the gap.
			name: "half-hourly across the spring gap", cron: "0,30 * * * *", zone: "Europe/Berlin", after: "2026-03-28T23:45:00Z",
			want: []string{"2026-03-29T01:00:00+01:00", "2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"},
		},
		{
			// A gap firing that coincides with a regular one fires once.
			name: "02:00 and 03:00 on the spring night", cron: "0 2,3 * * *", zone: "Europe/Berlin", after: "2026-03-28T12:00:00Z",
			want: []string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00", "2026-03-30T03:00:00+02:00"},
		},
		{
			// Fall back in Berlin: 03:00 CEST becomes 02:00 CET. 02:30
			// happens twice: a daily schedule fires at the first only.
			name: "daily in the repeated hour", cron: "30 2 * * *", zone: "Europe/Berlin", after: "2026-10-23T12:00:00Z",
			want: []string{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"},
		},
		{
			// Every 15 minutes keeps firing every 15 minutes of real time.
			name: "quarter-hourly through the repeated hour", cron: "*/15 * * * *", zone: "Europe/Berlin", after: "2026-10-25T00:20:00Z",
			want: []string{
				"2026-10-25T02:30:00+02:00", "2026-10-25T02:45:00+02:00",
				"2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00", "2026-10-25T02:30:00+01:00",
				"2026-10-25T02:45:00+01:00", "2026-10-25T03:00:00+01:00",
			},
		},
		{
			// Local time stays 09:00 across the change; UTC moves.
			name: "weekly across fall back", cron: "0 9 * * MON", zone: "Europe/Berlin", after: "2026-10-12T12:00:00Z",
			want: []string{"2026-10-19T09:00:00+02:00", "2026-10-26T09:00:00+01:00"},
		},
		{
			// São Paulo 2018: midnight did not exist on 4 November.
			name: "midnight in a gap", cron: "@daily", zone: "America/Sao_Paulo", after: "2018-11-02T12:00:00Z",
			want: []string{"2018-11-03T00:00:00-03:00", "2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"},
		},
		{
			// Lord Howe Island shifts by half an hour: 02:00 becomes 02:30.
			name: "half-hour shift", cron: "15 2 * * *", zone: "Australia/Lord_Howe", after: "2026-10-02T12:00:00Z",
			want: []string{"2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"},
		},
		{
			name: "last Friday of the month", cron: "0 17 * * FRI#L", zone: "UTC", after: "2026-01-01T00:00:00Z",
			want: []string{"2026-01-30T17:00:00Z", "2026-02-27T17:00:00Z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := schedule.Preview(schedule.Spec{Name: "p", Cron: tc.cron, Zone: tc.zone}, mustTime(t, tc.after), len(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if g := formatAll(got); !equalStrings(g, tc.want) {
				t.Errorf("firings\n got %q\nwant %q", g, tc.want)
			}
		})
	}
}

// Intervals are elapsed time: DST does not touch them.
func TestPreviewInterval(t *testing.T) {
	t.Parallel()
	anchor := mustTime(t, "2026-01-01T06:00:00Z")
	got, err := schedule.Preview(schedule.Spec{Name: "i", Every: 10 * time.Hour, Anchor: anchor}, mustTime(t, "2025-12-31T19:00:00Z"), 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2025-12-31T20:00:00Z", "2026-01-01T06:00:00Z", "2026-01-01T16:00:00Z"}
	if g := formatAll(got); !equalStrings(g, want) {
		t.Errorf("firings %q, want %q", g, want)
	}
	got, err = schedule.Preview(schedule.Spec{Name: "i", Every: time.Hour}, mustTime(t, "2026-03-29T00:30:00Z"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if g := formatAll(got); !equalStrings(g, []string{"2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}) {
		t.Errorf("hourly default anchor: %q", g)
	}
}

func TestKeyAndPolicyText(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// The two 02:30s of the fall-back night have different keys.
	first := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC).In(berlin)
	second := first.Add(time.Hour)
	if k := schedule.Key("digest", first); k != "digest:2026-10-25T00:30:00Z" {
		t.Errorf("Key = %q", k)
	}
	if schedule.Key("digest", first) == schedule.Key("digest", second) {
		t.Error("the repeated hour's two instants share a key")
	}
	for _, p := range []schedule.MissedPolicy{schedule.MissedLatest, schedule.MissedSkip, schedule.MissedAll} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back schedule.MissedPolicy
		if err := back.UnmarshalText(b); err != nil || back != p {
			t.Errorf("%v round trip: %v %v", p, back, err)
		}
	}
	var p schedule.MissedPolicy
	if err := p.UnmarshalText([]byte("sometimes")); err == nil {
		t.Error("unknown policy text accepted")
	}
	if _, err := schedule.MissedPolicy(9).MarshalText(); err == nil {
		t.Error("unknown policy marshalled")
	}
}
