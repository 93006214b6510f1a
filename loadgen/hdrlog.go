package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Tags of the interval histograms in a sockbench HdrHistogram log. The
// latency histogram is untagged, as tools expect of the main series.
const (
	TagService = "service"
	TagSendLag = "send_lag"
	TagConnect = "connect"
)

// reportComment starts the comment line that carries the run's Report as
// JSON; HdrHistogram readers ignore comments, sockbench merge reads it.
const reportComment = "#sockbench-report "

// WriteHdrLog writes rep's histograms in the standard HdrHistogram interval
// log format (version 1.3, values in nanoseconds, absolute time stamps,
// readable by HdrHistogram's HistogramLogReader in Java, Go, C...): latency
// (untagged) one interval per Config.Interval when the run recorded them
// (rep.Intervals; `sockbench load --hdr-out` asks for 1 s), else one
// interval covering the measurement; service time and send lag
// (Tag=service, Tag=send_lag, open loop only) and connect time
// (Tag=connect) one interval each. A comment line keeps the rest of the
// Report so `sockbench merge` can add up requests and errors too.
func WriteHdrLog(w io.Writer, rep *Report) error {
	if rep.LatencyHist == nil {
		return errors.New("loadgen: report has no histograms to log")
	}
	lw := hdrhistogram.NewHistogramLogWriter(w)
	meta, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	steps := []func() error{
		lw.OutputLogFormatVersion,
		func() error { return lw.OutputStartTime(rep.LatencyHist.StartTimeMs()) },
		func() error { return lw.OutputComment("[sockbench load, latency values in nanoseconds]") },
		func() error { _, err := fmt.Fprintf(w, "%s%s\n", reportComment, meta); return err },
		lw.OutputLegend,
	}
	if len(rep.Intervals) > 0 {
		for _, h := range rep.Intervals {
			steps = append(steps, func() error { return lw.OutputIntervalHistogram(h) })
		}
	} else {
		steps = append(steps, func() error { return lw.OutputIntervalHistogram(rep.LatencyHist) })
	}
	for _, t := range []struct {
		h   *hdrhistogram.Histogram
		tag string
	}{{rep.ServiceHist, TagService}, {rep.SendLagHist, TagSendLag}, {rep.ConnectHist, TagConnect}} {
		if t.h != nil {
			steps = append(steps, func() error { return outputTagged(lw, t.h, t.tag) })
		}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func outputTagged(lw *hdrhistogram.HistogramLogWriter, h *hdrhistogram.Histogram, tag string) error {
	old := h.Tag()
	h.SetTag(tag)
	defer h.SetTag(old)
	return lw.OutputIntervalHistogram(h)
}

// Histograms are the histograms of one HdrHistogram log, by tag; those
// the log does not have are nil.
type Histograms struct {
	Latency, Service, SendLag, Connect *hdrhistogram.Histogram
}

// ReadHdrLog reads one HdrHistogram log: every interval histogram merged by
// tag (untagged ones count as latency), and the sockbench Report comment if
// the log has one (nil otherwise).
func ReadHdrLog(r io.Reader) (hs Histograms, meta *Report, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return hs, nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), reportComment); ok {
			meta = &Report{}
			if err := json.Unmarshal([]byte(s), meta); err != nil {
				return hs, nil, fmt.Errorf("sockbench report comment: %w", err)
			}
			break
		}
	}
	lr := hdrhistogram.NewHistogramLogReader(bytes.NewReader(data))
	intervals := 0
	for {
		h, err := lr.NextIntervalHistogram()
		if err != nil {
			return Histograms{}, nil, fmt.Errorf("reading histogram %d: %w", intervals+1, err)
		}
		if h == nil {
			break
		}
		intervals++
		dst := &hs.Latency
		switch h.Tag() {
		case TagService:
			dst = &hs.Service
		case TagSendLag:
			dst = &hs.SendLag
		case TagConnect:
			dst = &hs.Connect
		}
		if *dst == nil {
			*dst = newHist()
			(*dst).SetStartTimeMs(h.StartTimeMs())
			(*dst).SetEndTimeMs(h.EndTimeMs())
		}
		if dropped := (*dst).Merge(h); dropped > 0 {
			return Histograms{}, nil, fmt.Errorf("histogram %d: %d values outside 1ns..1h", intervals, dropped)
		}
		(*dst).SetStartTimeMs(min((*dst).StartTimeMs(), h.StartTimeMs()))
		(*dst).SetEndTimeMs(max((*dst).EndTimeMs(), h.EndTimeMs()))
	}
	if intervals == 0 {
		return Histograms{}, nil, errors.New("no HdrHistogram intervals found (is this an --hdr-out log?)")
	}
	if hs.Latency == nil {
		return Histograms{}, nil, errors.New("no latency histogram (only tagged ones) in the log")
	}
	return hs, meta, nil
}

// MergeLogs reads HdrHistogram logs written by several load generators
// running at the same time (for instance on several machines) and returns
// one Report: histograms merged, counts added, throughputs added (the runs
// were concurrent), durations the longest. names label warnings.
func MergeLogs(names []string, logs []io.Reader) (*Report, error) {
	if len(logs) == 0 {
		return nil, errors.New("loadgen: nothing to merge")
	}
	out := &Report{
		Counts:      newCounts(),
		Warmup:      newCounts(),
		Warnings:    []string{},
		RateHeld:    true,
		LatencyHist: newHist(),
		ConnectHist: newHist(),
	}
	targets := map[string]bool{}
	var failures []string
	var windows []window
	var shards []string
	for i, r := range logs {
		hs, m, err := ReadHdrLog(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", names[i], err)
		}
		lat := hs.Latency
		windows = append(windows, window{names[i], lat.StartTimeMs(), lat.EndTimeMs()})
		if m != nil {
			shards = append(shards, m.Shard)
		}
		out.Sources++
		if m == nil {
			// A log from another tool: only its histogram is known.
			secs := float64(lat.EndTimeMs()-lat.StartTimeMs()) / 1e3
			m = &Report{Counts: Counts{Requests: lat.TotalCount()}, DurationS: secs, Loop: "closed", RateHeld: true}
			if secs > 0 {
				m.RPS = float64(lat.TotalCount()) / secs
			}
			out.Warnings = append(out.Warnings, names[i]+": no sockbench report in the log; only its latency histogram is merged, its values taken as nanoseconds")
		}
		out.LatencyHist.Merge(lat)
		for _, h := range []struct {
			dst **hdrhistogram.Histogram
			src *hdrhistogram.Histogram
		}{
			{&out.ServiceHist, hs.Service}, {&out.SendLagHist, hs.SendLag}} {
			if h.src != nil {
				if *h.dst == nil {
					*h.dst = newHist()
				}
				(*h.dst).Merge(h.src)
			}
		}
		if hs.Connect != nil {
			out.ConnectHist.Merge(hs.Connect)
		}
		mergeCounts(out, m)
		if m.Target != "" {
			targets[m.Target] = true
		}
		for _, w := range m.Warnings {
			out.Warnings = append(out.Warnings, names[i]+": "+w)
		}
		if m.Failure != "" {
			failures = append(failures, names[i]+": "+m.Failure)
		}
	}
	w, err := checkWindows(windows)
	if err != nil {
		return nil, err
	}
	out.Warnings = append(out.Warnings, w...)
	out.Warnings = append(out.Warnings, checkShards(shards)...)
	for t := range targets {
		if out.Target == "" {
			out.Target = t
		} else if t != out.Target {
			out.Target = "(several targets)"
		}
	}
	if len(failures) > 0 {
		out.Failure = strings.Join(failures, "; ")
	}
	out.Latency = Summarize(out.LatencyHist)
	out.Connect = Summarize(out.ConnectHist)
	if out.ServiceHist != nil {
		s := Summarize(out.ServiceHist)
		out.Service = &s
	}
	if out.SendLagHist != nil {
		s := Summarize(out.SendLagHist)
		out.SendLag = &s
	}
	return out, nil
}

// mergeCounts adds one source's counts into out.
func mergeCounts(out, m *Report) {
	if out.Sources > 1 && m.Loop != out.Loop {
		out.Loop = "mixed"
	}
	if out.Sources == 1 {
		out.Net, out.Mode, out.Loop, out.Engine = m.Net, m.Mode, m.Loop, m.Engine
		out.Pipeline, out.Size, out.SizeMin, out.SizeMax, out.Seed = m.Pipeline, m.Size, m.SizeMin, m.SizeMax, m.Seed
		out.WarmupS, out.Start = m.WarmupS, m.Start
	}
	out.Conns += m.Conns
	out.ConnsOK += m.ConnsOK
	out.Rate += m.Rate
	out.DurationS = max(out.DurationS, m.DurationS)
	out.Add(&m.Counts, 5)
	out.Warmup.Add(&m.Warmup, 0)
	out.RPS += m.RPS
	out.MBps += m.MBps
	out.ClientCPUSeconds += m.ClientCPUSeconds
	out.ClientCPUCount += m.ClientCPUCount
	out.ClientSpinS += m.ClientSpinS
	out.ClientSaturated = out.ClientSaturated || m.ClientSaturated
	out.RateHeld = out.RateHeld && m.RateHeld
	out.Interrupted = out.Interrupted || m.Interrupted
}
