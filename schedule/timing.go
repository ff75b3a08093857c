package schedule

import (
	"slices"
	"time"

	cron "github.com/netresearch/go-cron"
)

// timing computes a schedule's firing instants. Implementations are
// immutable and safe for concurrent use.
type timing interface {
	// next returns the first firing strictly after t, or false when there
	// is none within the search horizon (five years for cron expressions).
	next(t time.Time) (time.Time, bool)
}

// interval fires every `every` of elapsed time, at anchor + k·every for
// every integer k. Wall clocks and time zones play no part.
type interval struct {
	every  time.Duration
	anchor time.Time
}

func (iv interval) next(t time.Time) (time.Time, bool) {
	d := t.Sub(iv.anchor)
	k := d / iv.every
	if d < 0 && d%iv.every != 0 {
		k-- // floor, not truncation toward zero
	}
	return iv.anchor.Add((k + 1) * iv.every).UTC(), true
}

// cronTiming fires at the wall-clock times a cron expression names, in a
// time zone. The expression is evaluated by the cron library on civil time
// (wall-clock readings, represented as UTC times so that no DST applies);
// civilToInstants then maps each reading to the instants that show it in
// the zone, which is where the DST rules live:
//
//   - A reading that exists once fires once.
//   - A reading skipped by a forward transition (02:30 on the night clocks
//     go from 02:00 to 03:00) fires once, at the first instant after the
//     gap (03:00), when the expression names specific hours; with every
//     hour (hour field "*"), it does not fire: no hour of real time was
//     lost, and the neighbouring firings are the usual elapsed time apart.
//   - A reading repeated by a backward transition (02:30 when clocks go from
//     03:00 back to 02:00) fires at its first occurrence only when the
//     expression names specific hours, and at both occurrences with every
//     hour, so that "every 15 minutes" keeps firing every 15 minutes of
//     real time through the repeated hour.
//
// Several readings that map to the same instant fire once.
type cronTiming struct {
	spec *cron.SpecSchedule // Location UTC: evaluated on civil time
	loc  *time.Location
	// everyHour is true when the hour field matches all 24 hours.
	everyHour bool
}

const (
	day = 24 * time.Hour
	// zoneWindow is wide enough that every instant whose wall clock in any
	// zone reads c lies within c±zoneWindow (UTC offsets are within ±26h
	// with a wide margin), and that a backward transition's repeat is seen
	// from both sides.
	zoneWindow = 2 * day
	// maxCivilSteps bounds the wall-clock readings one next call examines:
	// a gap of a whole day of minutes, with room to spare.
	maxCivilSteps = 10000
)

func newCronTiming(spec *cron.SpecSchedule, loc *time.Location) *cronTiming {
	const allHours = 1<<24 - 1
	spec.Location = time.UTC
	return &cronTiming{spec: spec, loc: loc, everyHour: spec.Hour&allHours == allHours}
}

// civil returns the wall-clock reading of instant t in the zone, as a UTC
// time.
func (ct *cronTiming) civil(t time.Time) time.Time {
	_, off := t.In(ct.loc).Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// transition is a change of UTC offset at an instant.
type transition struct {
	at            time.Time
	before, after time.Duration
}

// zoneAround returns the offsets in force between lo and hi (instants) and
// the transitions among them.
func (ct *cronTiming) zoneAround(lo, hi time.Time) (offsets []time.Duration, trans []transition) {
	t := lo
	_, off := t.In(ct.loc).Zone()
	offsets = append(offsets, time.Duration(off)*time.Second)
	for range 64 { // no zone changes its offset 64 times in four days
		_, end := t.In(ct.loc).ZoneBounds()
		if end.IsZero() || end.After(hi) {
			break
		}
		_, b := end.Add(-time.Nanosecond).In(ct.loc).Zone()
		_, a := end.In(ct.loc).Zone()
		before, after := time.Duration(b)*time.Second, time.Duration(a)*time.Second
		if before != after {
			trans = append(trans, transition{at: end.UTC(), before: before, after: after})
			if !slices.Contains(offsets, after) {
				offsets = append(offsets, after)
			}
		}
		t = end
	}
	return offsets, trans
}

// civilToInstants returns, in ascending order, the firing instants of the
// wall-clock reading c under the DST rules above.
func (ct *cronTiming) civilToInstants(c time.Time) []time.Time {
	offsets, trans := ct.zoneAround(c.Add(-zoneWindow), c.Add(zoneWindow))
	var out []time.Time
	for _, off := range offsets {
		i := c.Add(-off)
		if ct.civil(i).Equal(c) && !slices.ContainsFunc(out, i.Equal) {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	switch {
	case len(out) == 0: // skipped by a forward transition
		if ct.everyHour {
			return nil
		}
		for _, tr := range trans {
			if tr.after > tr.before && !c.Before(tr.at.Add(tr.before)) && c.Before(tr.at.Add(tr.after)) {
				return []time.Time{tr.at}
			}
		}
		return nil
	case len(out) > 1 && !ct.everyHour: // repeated: first occurrence only
		return out[:1]
	}
	return out
}

func (ct *cronTiming) next(t time.Time) (time.Time, bool) {
	// Every instant after t reads, in the zone, later than t + the smallest
	// offset in force around t; start the wall-clock search there.
	offsets, _ := ct.zoneAround(t.Add(-zoneWindow), t.Add(zoneWindow))
	c := t.UTC().Add(slices.Min(offsets))
	var best time.Time
	found := false
	for range maxCivilSteps {
		c = ct.spec.Next(c)
		if c.IsZero() {
			break
		}
		if found {
			// No reading from here on maps to an instant before
			// c - (largest offset): stop once that cannot beat best.
			offs, _ := ct.zoneAround(c.Add(-zoneWindow), c.Add(zoneWindow))
			if !c.Add(-slices.Max(offs)).Before(best) {
				break
			}
		}
		for _, i := range ct.civilToInstants(c) {
			if i.After(t) && (!found || i.Before(best)) {
				best, found = i, true
			}
		}
	}
	return best, found
}

// lastFirings returns the last limit firings in (after, upTo], ascending,
// and whether earlier firings in (after, upTo] were left out. Its work is
// proportional to the firings near upTo, not to the length of the range:
// it looks back over a window that grows until it holds enough firings.
func lastFirings(tm timing, after, upTo time.Time, limit int) ([]time.Time, bool) {
	if limit < 1 || !upTo.After(after) {
		return nil, false
	}
	first, ok := tm.next(after)
	if !ok || first.After(upTo) {
		return nil, false
	}
	span := upTo.Sub(after)
	window := span
	if second, ok := tm.next(first); ok {
		gap := second.Sub(first)
		if w := gap * time.Duration(limit+1); w/time.Duration(limit+1) == gap && w < window {
			window = w
		}
	}
	window = max(window, time.Second)
	ring := make([]time.Time, 0, limit+1)
	for {
		from := upTo.Add(-window)
		final := !from.After(after)
		if final {
			from = after
		}
		ring = ring[:0]
		count := 0
		for t := from; ; {
			n, ok := tm.next(t)
			if !ok || n.After(upTo) {
				break
			}
			count++
			if len(ring) == limit+1 {
				copy(ring, ring[1:])
				ring = ring[:limit]
			}
			ring = append(ring, n)
			t = n
		}
		switch {
		case count > limit:
			return slices.Clone(ring[len(ring)-limit:]), true
		case final:
			return slices.Clone(ring), false
		case count == limit:
			return slices.Clone(ring), !first.After(from)
		}
		if window > span/8 {
			window = span
		} else {
			window *= 8
		}
	}
}

// prevFiring returns the last firing before t, looking back at most
// horizon; false when there is none.
func prevFiring(tm timing, t time.Time, horizon time.Duration) (time.Time, bool) {
	ps, _ := lastFirings(tm, t.Add(-horizon), t.Add(-time.Nanosecond), 1)
	if len(ps) == 0 {
		return time.Time{}, false
	}
	return ps[0], true
}
