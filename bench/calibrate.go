package bench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Bound labels: whether a run measured the server (server-bound: its
// throughput was clearly below the load generator's calibrated ceiling
// and the generator was not saturated) or the load generator
// (client-bound). unknown when no ceiling could be calibrated and the
// generator was not saturated.
const (
	BoundServer  = "server-bound"
	BoundClient  = "client-bound"
	BoundUnknown = "unknown"
)

// calibrationKey is the shape of load a calibration measures: a cell's key
// without the model and the server's handler cost, closed loop.
func calibrationKey(c Cell) Key {
	k := c.Key()
	k.Model, k.Rate, k.WorkUS, k.BlockUS = "", 0, 0, 0
	return k
}

// calibrationCells returns one closed-loop cell per shape of load in the
// plan, in run order.
func (r *Runner) calibrationCells() []Cell {
	seen := map[Key]bool{}
	var out []Cell
	for _, c := range r.cells {
		k := calibrationKey(c)
		if seen[k] {
			continue
		}
		seen[k] = true
		c.Model, c.Rate, c.Work, c.Block = "", 0, 0, 0
		out = append(out, c)
	}
	return out
}

// calibrationEstimate is the wall time the calibration step takes.
func (r *Runner) calibrationEstimate() time.Duration {
	var d time.Duration
	for _, c := range r.calibrationCells() {
		d += c.Duration + c.Warmup + 200*time.Millisecond
	}
	return d
}

// calibrate measures the load generator's own ceiling for every shape of
// load in the plan: `sockbench load --calibrate` drives a sink that costs
// next to nothing, the sink on the server's CPUs and the generator on its
// own, as in the cells. label then compares each run with it.
func (r *Runner) calibrate(ctx context.Context) {
	cells := r.calibrationCells()
	r.ceilings = map[Key]ceiling{}
	fmt.Fprintf(r.opts.Progress, "calibrating the load generator against a cost-free sink: %d shape(s) of load, about %v\n",
		len(cells), r.calibrationEstimate().Round(time.Second))
	for _, c := range cells {
		if ctx.Err() != nil {
			return
		}
		k := calibrationKey(c)
		if why := r.wontFit(c); why != "" {
			r.ceilings[k] = ceiling{note: "not calibrated: " + why}
			continue
		}
		extra := []string{"--calibrate", c.Net, "--warmup", c.Warmup.String()}
		var cpus []int
		// With the server on another machine the sink still runs here, on
		// one CPU of the generator's (the load's default): the ceiling is
		// then that of one CPU fewer than the run's generator has, which
		// errs towards calling a cell client-bound.
		if r.target == nil && len(r.opts.ServerCPUs) > 0 && len(r.opts.ClientCPUs) > 0 {
			cpus = append(slices.Clone(r.opts.ServerCPUs), r.opts.ClientCPUs...)
			slices.Sort(cpus)
			cpus = slices.Compact(cpus)
			extra = append(extra, "--sink-cpus", formatCPUs(r.opts.ServerCPUs))
		}
		rep, err := r.loadProcess(ctx, c, c.Duration, cpus, extra...)
		switch {
		case err != nil:
			r.ceilings[k] = ceiling{note: "calibration failed: " + err.Error()}
		case rep.Calibration == nil || rep.Failure != "":
			r.ceilings[k] = ceiling{note: "calibration failed: " + rep.Failure}
		default:
			r.ceilings[k] = ceiling{rps: rep.Calibration.CeilingRPS}
		}
	}
}

// label records the load generator's ceiling for the run's shape and
// whether the run measured the server or the generator.
func (r *Runner) label(cell Cell, row *Row) {
	c := r.ceilings[calibrationKey(cell)]
	if c.rps > 0 {
		row.ClientCeilingRPS = c.rps
	}
	switch {
	case row.ClientSaturated:
		row.Bound = BoundClient
	case c.rps <= 0:
		row.Bound = BoundUnknown
		row.Note = joinNote(row.Note, c.note)
	case row.RPS >= clientBusyMark*c.rps:
		row.Bound = BoundClient
	default:
		row.Bound = BoundServer
	}
}
