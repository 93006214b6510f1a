package bench

import (
	"fmt"
	"strings"
	"time"
)

// StatusPartial is the status of the one row an interrupted bench appends
// to its CSV: the set is partial, not every run the profile planned was
// made. The row names no cell (model, net and the rest are empty) and its
// note says why and how far it got: "interrupted: 37 of 288 runs". A
// status row rather than a column: the CSV is written row by row as runs
// end, and only the end of the run knows that it was cut short; every
// reader that keeps status ok rows (as all must, skipped and failed ones
// being there too) sees it without a schema change.
const StatusPartial = "partial"

// Partial is what a partial set's marker says.
type Partial struct {
	Why           string // "interrupted", or what stopped the run
	Done, Planned int    // runs written, runs planned
}

func (p Partial) String() string {
	if p.Planned == 0 {
		return p.Why
	}
	return fmt.Sprintf("%s: %d of %d runs", p.Why, p.Done, p.Planned)
}

// partialRow is the marker row of a set stopped after done of planned runs.
func partialRow(t time.Time, env Env, p Partial) Row {
	row := Row{Time: t, Env: env, Status: StatusPartial, Note: p.String()}
	row.clearMeasured()
	return row
}

// PartialOf reports whether rows hold a partial marker, and what it says
// (for several files merged, the first marker).
func PartialOf(rows []Row) (Partial, bool) {
	for i := range rows {
		if rows[i].Status == StatusPartial {
			return parsePartial(rows[i].Note), true
		}
	}
	return Partial{}, false
}

// parsePartial reads a marker's note; what it cannot read stays in Why.
func parsePartial(note string) Partial {
	why, rest, ok := strings.Cut(note, ": ")
	var p Partial
	if ok {
		if _, err := fmt.Sscanf(rest, "%d of %d runs", &p.Done, &p.Planned); err == nil {
			p.Why = why
			return p
		}
	}
	p.Why = note
	return p
}
