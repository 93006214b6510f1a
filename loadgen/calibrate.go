package loadgen

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Calibration is what Calibrate found: the most this generator drives on
// the CPUs it has, against a server that costs next to nothing.
type Calibration struct {
	Net           string  `json:"net"`
	SinkCPUList   string  `json:"sink_cpu_list"`   // CPUs the sink's loops ran on; "" when it shared the generator's
	ClientCPUList string  `json:"client_cpu_list"` // CPUs the generator's loops ran on; "" when unpinned
	ClientBusy    float64 `json:"client_busy"`     // share of those CPUs the generator kept busy (spin excluded)
	CeilingRPS    float64 `json:"ceiling_rps"`     // the generator's ceiling in req/s
	Extrapolated  bool    `json:"extrapolated"`    // the generator was not saturated: CeilingRPS is rps / ClientBusy
	Shared        bool    `json:"shared"`          // sink and generator shared CPUs: the ceiling is optimistic
}

// saturatedShare is the CPU share from which a generator counts as
// saturated (client_saturated): its throughput is then its ceiling.
const saturatedShare = 0.9

// describe says what the calibration found, for the text report.
func (c *Calibration) describe() string {
	s := fmt.Sprintf("%s req/s: the most this generator drives on its %s (%.0f%% busy)", fmtCount(c.CeilingRPS), cpusNoun(strings.Count(c.ClientCPUList, ",")+1), 100*c.ClientBusy)
	if c.ClientCPUList == "" {
		s = fmt.Sprintf("%s req/s: the most this generator drives (%.0f%% busy)", fmtCount(c.CeilingRPS), 100*c.ClientBusy)
	}
	if c.Extrapolated {
		s += "; extrapolated from its busy share, as the sink or the connection count, not the generator, limited the run"
	}
	if c.Shared {
		s += "; the sink shared its CPUs, which makes a request cheaper than across CPUs: optimistic"
	}
	return s
}

// Calibrate measures the generator's own ceiling: it starts a Sink on
// cfg's network (cfg.Target is ignored), pins the sink's loops to
// sinkCPUs and the generator's epoll loops to the other CPUs this process
// may use, and runs cfg against it. Without sinkCPUs the sink takes the
// last CPU when there are at least two. The generator's CPU is measured on
// its own threads, apart from the sink's.
//
// The ceiling is the throughput when the generator was saturated (>= 90%
// busy); otherwise the throughput divided by its busy share, marked
// extrapolated. A sink sharing the generator's CPU makes the ceiling
// optimistic: measured here, a request cost the generator 2.0 µs of CPU
// with the server on its CPU and 3.7 µs with the server on another (TCP,
// 64 connections, 64 B), as cross-CPU wake-ups are not free.
func Calibrate(ctx context.Context, cfg Config, network string, sinkCPUs []int) (*Report, error) {
	allowed := allowedCPUs()
	cal := &Calibration{Net: network}
	var clientCPUs []int
	if len(allowed) > 0 { // pinning is possible
		for _, c := range sinkCPUs {
			if !slices.Contains(allowed, c) {
				return nil, errorf(ErrConfig, "--sink-cpus: CPU %d is not one this process may use (%s)", c, formatCPUList(allowed))
			}
		}
		if len(sinkCPUs) == 0 && len(allowed) >= 2 {
			sinkCPUs = allowed[len(allowed)-1:]
		}
		for _, c := range allowed {
			if !slices.Contains(sinkCPUs, c) {
				clientCPUs = append(clientCPUs, c)
			}
		}
		if len(clientCPUs) == 0 {
			clientCPUs, cal.Shared = allowed, true
		}
	} else if len(sinkCPUs) > 0 {
		return nil, errorf(ErrConfig, "--sink-cpus: pinning threads needs Linux")
	}
	if len(sinkCPUs) == 0 {
		cal.Shared = true
	}
	sink, err := StartSink(network, cfg.Mode, sinkCPUs)
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	cfg.Target = sink.Target
	cfg.loopCPUs = clientCPUs
	rep, err := Run(ctx, cfg)
	if rep == nil {
		return nil, err
	}
	cal.SinkCPUList, cal.ClientCPUList = formatCPUList(sinkCPUs), formatCPUList(clientCPUs)
	if cal.Shared {
		cal.SinkCPUList = ""
	}
	if rep.DurationS > 0 && rep.ClientCPUCount > 0 {
		cal.ClientBusy = (rep.ClientCPUSeconds - rep.ClientSpinS) / rep.DurationS / float64(rep.ClientCPUCount)
	}
	cal.CeilingRPS = rep.RPS
	if cal.ClientBusy < saturatedShare && cal.ClientBusy > 0 {
		cal.CeilingRPS, cal.Extrapolated = rep.RPS/cal.ClientBusy, true
	}
	rep.Calibration = cal
	return rep, err
}

// formatCPUList writes a CPU list as "0,2,3".
func formatCPUList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
