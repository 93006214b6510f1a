// Package human formats sockbench's numbers for people: durations in
// microseconds with a unit, counts with thousands separators, and
// throughputs and costs in three or four significant digits with a k or M
// suffix. It is the one set of formatters: the load generator's report,
// the bench summary, compare's table and the HTML report all print
// through it, so one figure reads the same everywhere.
//
// What is written for machines (CSV, JSON, Go benchmark format) is not
// formatted here: those keep every digit they measured.
package human

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Missing is what every formatter prints for NaN: a figure that was not
// measured (a skipped or failed run), never a number.
const Missing = "-"

// Micros formats a duration in microseconds with the unit that keeps three
// significant digits: 500ns, 17.3µs, 2.11ms, 3.2s. Zero and below print
// as "0".
func Micros(us float64) string {
	switch {
	case math.IsNaN(us):
		return Missing
	case us <= 0:
		return "0"
	case us < 1:
		return fmt.Sprintf("%.0fns", us*1e3)
	case us < 999.5:
		return fmt.Sprintf("%.3gµs", us)
	case us < 999.5e3:
		return fmt.Sprintf("%.3gms", us/1e3)
	}
	return fmt.Sprintf("%.3gs", us/1e6)
}

// Number formats a throughput, a cost or a size with 3-4 significant
// digits and a k or M suffix: 0.84, 39.3, 13050 -> 13.1k, 1.25M.
func Number(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return Missing
	case v == 0:
		return "0"
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Count formats a count, rounded to a whole number, with thousands
// separators: 1,234,567.
func Count(v float64) string {
	if math.IsNaN(v) {
		return Missing
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// Rate formats a rate in requests per second: a Count, unless it has a
// fraction that rounding would hide (--rate 0.5 prints 0.5).
func Rate(v float64) string {
	if v != math.Round(v) && v < 1000 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return Count(v)
}
