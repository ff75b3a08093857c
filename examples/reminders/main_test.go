package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// Two simulated weeks: each period enqueued once between two instances,
// the schedules on Berlin time across the end of summer time, and the
// outage handled by each schedule's missed-period policy.
func TestReminders(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, db.Pool); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"Mon 19 Oct 08:00 CEST  crm.digest.weekly, by instance",
		"digest of Mon 12 Oct 08:00 to Mon 19 Oct 08:00 emailed: deals contacted 3, won 0 (Message-ID <crm.digest.weekly:2026-10-19T06:00:00Z@crm.example>)",
		"Mon 19 Oct 09:00 CEST  crm.follow-up, by instance",
		"follow-up sweep: remind Acme (ada, 16 days since the last contact)",
		"Wed 21 Oct 09:00 CEST  crm.follow-up, by instance 2: follow-up sweep: every open deal was contacted this week",
		"Fri 23 Oct 09:00 CEST  crm.follow-up, by instance",
		"follow-up sweep: remind Globex (bob, 7 days since the last contact), Initech (ada, 7 days since the last contact)",
		// Summer time ended on Sunday: 08:00 and 09:00 are CET now.
		"Mon 26 Oct 06:00 CET  every app instance is down until 10:30",
		// The reminder sweep of the outage morning is passed over...
		`msg="txoutbox: schedule passed over missed periods" schedule=crm.follow-up policy=skip decided_from=2026-10-23T09:00:00+02:00 decided_until=2026-10-26T10:30:00+01:00`,
		// ... and the digest sent late.
		"Mon 26 Oct 08:00 CET  crm.digest.weekly (2h30m0s late), by instance",
		"digest of Mon 19 Oct 08:00 to Mon 26 Oct 08:00 emailed: deals contacted 3, won 1 (Message-ID <crm.digest.weekly:2026-10-26T07:00:00Z@crm.example>)",
		"Tue 27 Oct 09:00 CET  crm.follow-up, by instance",
		"Mon 2 Nov 08:00 CET  crm.digest.weekly, by instance",
		"follow-up sweep: remind Acme (ada, 12 days since the last contact), Globex (bob, 9 days since the last contact)",
		// 3 digests, and 10 weekdays' sweeps less the one skipped.
		"13 entries, one per period",
		"crm.digest.weekly  0 8 * * MON      latest  2026-11-02T08:00:00+01:00  2026-11-09T08:00:00+01:00",
		"crm.follow-up      0 9 * * MON-FRI  skip    2026-11-02T09:00:00+01:00  2026-11-03T09:00:00+01:00",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "Mon 26 Oct 09:00 CET  crm.follow-up") {
		t.Error("the follow-up sweep of the outage morning ran; MissedSkip should have passed it over")
	}
}
