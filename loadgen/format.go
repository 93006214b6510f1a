package loadgen

import "github.com/sockbench/sockbench/internal/human"

// The report's figures print through internal/human, the formatters bench
// shares, so a latency or a count reads the same in both.
var (
	fmtDur   = human.Micros
	fmtRate  = human.Rate
	fmtCount = human.Count
)
