package bench

import (
	"bytes"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRatioShift: the Hodges-Lehmann ratio finds a known ratio, and its
// 95% interval covers the true ratio in about 95% of samples (Moses'
// interval is exact for continuous data: coverage 1-2P(U <= C), 95.9%
// for 6 runs a side).
func TestRatioShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	draw := func(n int, center float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = center * math.Exp(0.15*rng.NormFloat64())
		}
		return v
	}
	const trials = 2000
	covered := 0
	for i := 0; i < trials; i++ {
		s := ratioShift(draw(6, 120), draw(6, 100), 0.95)
		if !s.OK() || !(s.Lo <= s.Est && s.Est <= s.Hi) {
			t.Fatalf("shift %+v", s)
		}
		if s.Lo <= 1.2 && 1.2 <= s.Hi {
			covered++
		}
	}
	// Binomial(2000, 0.959): 99.99% of draws within ±0.016.
	if c := float64(covered) / trials; c < 0.93 || c > 0.985 {
		t.Errorf("the 95%% interval covered the true ratio in %.3f of %d trials", c, trials)
	}
	// A large difference: the interval excludes 1, the estimate is close.
	s := ratioShift([]float64{120, 121, 119, 122, 118, 120}, []float64{100, 101, 99, 100, 102, 98}, 0.95)
	if math.Abs(s.Est-1.2) > 0.01 || !s.Excludes(1) {
		t.Errorf("1.2x: %+v", s)
	}
	// The interval of b/a is the inverse of that of a/b.
	a, b := draw(7, 50), draw(5, 40)
	ab, ba := ratioShift(a, b, 0.95), ratioShift(b, a, 0.95)
	if math.Abs(ab.Est*ba.Est-1) > 1e-9 || math.Abs(ab.Lo*ba.Hi-1) > 1e-9 || math.Abs(ab.Hi*ba.Lo-1) > 1e-9 {
		t.Errorf("a/b %+v, b/a %+v", ab, ba)
	}
	// Three runs a side cannot give a 95% interval: said, not invented.
	if s := ratioShift(draw(3, 1), draw(3, 1), 0.95); s.OK() || math.IsNaN(s.Est) {
		t.Errorf("3 runs a side: %+v", s)
	}
	d := diffShift([]float64{10, 11, 9, 10}, []float64{0, 1, -1, 0}, 0.95)
	if d.Est != 10 || !d.OK() {
		t.Errorf("difference: %+v", d)
	}
	if c := mosesC(6, 6, 0.05); c != 5 {
		t.Errorf("C(6,6) = %d, want 5 (the U table's critical value)", c)
	}
	if c := mosesC(30, 30, 0.05); c < 300 || c > 320 {
		t.Errorf("C(30,30) = %d by the normal approximation, want about 317", c)
	}
}

func TestBenjaminiHochberg(t *testing.T) {
	q := benjaminiHochberg([]float64{0.01, 0.04, 0.03, 0.5})
	want := []float64{0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5}
	for i := range q {
		if math.Abs(q[i]-want[i]) > 1e-12 {
			t.Errorf("q = %v, want %v", q, want)
			break
		}
	}
}

// verdictSet is a synthetic quick-profile result set: 4 models x 3
// transports x 2 modes x 2 connection counts, runs runs each, with
// multiplicative noise of sd noise, interleaved in time as bench runs
// them. slow scales one model's throughput down and its CPU per request
// up. Test data, never shown as results.
func verdictSet(rng *rand.Rand, runs int, noise float64, slow string, factor float64, clientBound32 bool) []Row {
	var rows []Row
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	i := 0
	for run := 1; run <= runs; run++ {
		for _, n := range []string{"tcp", "udp", "unix"} {
			for _, mode := range []string{"echo", "upper"} {
				for _, c := range []int{1, 32} {
					for _, m := range []string{"threaded", "eventloop", "prefork", "bare"} {
						k := key(m, n, c)
						k.Mode = mode
						rps, cpu := 20000.0*float64(c), 10.0
						rss := 9000 + 8*int64(c)
						if m == slow {
							rps, cpu, rss = rps/factor, cpu*factor, 9000+int64(float64(8*c)*factor)
						}
						rps *= math.Exp(noise * rng.NormFloat64())
						cpu *= math.Exp(noise * rng.NormFloat64())
						rss += int64(8 * rng.NormFloat64())
						bound := BoundServer
						if clientBound32 && c == 32 {
							bound = BoundClient
						}
						i++
						rows = append(rows, Row{Time: t0.Add(time.Duration(i) * time.Second), Key: k, Run: run,
							Env:       Env{Host: "testhost", CPUModel: "Test CPU", Cores: 2},
							DurationS: 0.3, Requests: int64(rps * 0.3), RPS: rps, CPUUSPerReq: cpu, ServerRSSKB: rss,
							P50US: 1e6 / rps, P99US: 3e6 / rps, Status: StatusOK, Bound: bound})
					}
				}
			}
		}
	}
	return rows
}

// TestVerdictsFindsAndHolds: on quick-like sets of 6 runs with 10% run
// to run noise (the quick profile's 0.3 s runs show 5 to 20%), a model
// 20% slower and 20% costlier everywhere is found (flagged in at least a
// quarter of the 24 rankings on throughput and CPU) in at least 19 of 20
// seeds, while of all the standings flagged over the 20 seeds at most 5%
// name a model that does not differ (Benjamini-Hochberg bounds that
// share, the false discovery rate, at alpha); and a set where every
// model is the same (A/A) reports no significant difference anywhere in
// at least 19 of 20 seeds.
func TestVerdictsFindsAndHolds(t *testing.T) {
	found, quiet, flaggedAll, wrongAll := 0, 0, 0, 0
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(100+seed, 7))
		v := ComputeVerdicts(verdictSet(rng, 6, 0.10, "eventloop", 1.2, false), 0.05)
		flagged, wrong := 0, 0
		for _, c := range v.Cells {
			for _, r := range c.Rankings {
				for _, s := range r.Standings {
					switch {
					case s.Differs && s.Model == "eventloop" && r.Metric != RankMemory:
						flagged++
					case s.Differs && r.Metric != RankMemory:
						wrong++
					}
				}
			}
		}
		flaggedAll += flagged
		wrongAll += wrong
		if flagged >= 6 {
			found++
		}
		aa := ComputeVerdicts(verdictSet(rand.New(rand.NewPCG(200+seed, 9)), 6, 0.10, "", 1, false), 0.05)
		differs := 0
		for _, c := range aa.Cells {
			for _, r := range c.Rankings {
				for _, s := range r.Standings {
					if s.Differs {
						differs++
					}
				}
			}
		}
		if differs == 0 {
			quiet++
		}
	}
	t.Logf("20%% difference found in %d of 20 seeds (%d standings flagged, %d of them wrongly); A/A quiet in %d of 20", found, flaggedAll+wrongAll, wrongAll, quiet)
	if found < 19 {
		t.Errorf("a 20%% difference was found in only %d of 20 seeds", found)
	}
	if share := float64(wrongAll) / float64(flaggedAll+wrongAll); share > 0.05 {
		t.Errorf("%d of %d flagged standings named a model that does not differ", wrongAll, flaggedAll+wrongAll)
	}
	if quiet < 19 {
		t.Errorf("an A/A set reported a difference in %d of 20 seeds", 20-quiet)
	}
}

// TestVerdictsClientBound: a client-bound cell is never ranked on
// throughput, even where its req/s differ; it is ranked on CPU per
// request, and the text says so.
func TestVerdictsClientBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	rows := verdictSet(rng, 6, 0.05, "eventloop", 1.3, true)
	v := ComputeVerdicts(rows, 0.05)
	checked := 0
	for _, c := range v.Cells {
		if c.Key.Conns != 32 {
			continue
		}
		checked++
		tput, cpu := c.Rankings[0], c.Rankings[1]
		if tput.Metric != RankThroughput || tput.Best != "" || len(tput.Standings) != 0 || !strings.Contains(tput.Note, "client-bound") {
			t.Errorf("%s: throughput ranked in a client-bound cell: %+v", c.Title, tput)
		}
		if cpu.Metric != RankCPU || cpu.Best == "eventloop" || !regexp.MustCompile(`eventloop 1\.[2-4]\d× \[`).MatchString(cpu.Sentence()) {
			t.Errorf("%s: CPU ranking %q", c.Title, cpu.Sentence())
		}
	}
	if checked != 6 {
		t.Fatalf("%d client-bound cells, want 6", checked)
	}
	var buf bytes.Buffer
	v.WriteText(&buf)
	s := strings.Join(strings.Fields(buf.String()), " ")
	for _, want := range []string{"FINDINGS", "tcp echo, 32 conns", "client-bound (threaded, eventloop, prefork, bare): req/s are the load generator's, not ranked",
		"Of the limit (bare = 1", "eventloop 0.77", "Benjamini-Hochberg", "memory/conn (from 1)"} {
		if !strings.Contains(s, want) {
			t.Errorf("text lacks %q:\n%s", want, s)
		}
	}
	// No memory ranking for UDP: its server holds one socket.
	for _, c := range v.Cells {
		for _, r := range c.Rankings {
			if r.Metric == RankMemory && c.Key.Net == "udp" {
				t.Errorf("%s ranked on memory per connection", c.Title)
			}
		}
	}
}

// TestCompareClientBoundGatesCPU: in client-bound cells compare gates on
// server CPU per request alone. A server 20% costlier per request whose
// throughput did not move (the generator's ceiling held it) fails; a
// throughput change there does not.
func TestCompareClientBoundGatesCPU(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	base := verdictSet(rng, 6, 0.05, "", 1, true)
	costly := verdictSet(rng, 6, 0.05, "", 1, true)
	for i := range costly {
		if costly[i].Conns == 32 {
			costly[i].CPUUSPerReq *= 1.2
		}
	}
	c, err := Compare(base, costly, CompareOptions{Threshold: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	failed := c.Failed()
	if len(failed) < 20 {
		t.Errorf("%d failures, want most of the 24 client-bound cells on CPU", len(failed))
	}
	// Of the failures, those in the 1-connection cells (nothing changed
	// there) are false discoveries, which Benjamini-Hochberg keeps to
	// about alpha of all failures.
	wrong := 0
	for _, f := range failed {
		switch {
		case f.Key.Conns != 32:
			wrong++
		case f.Metric.Name != "cpu_us_per_req" || !f.ClientBound || !(f.Delta > 0.1):
			t.Errorf("failure %s %s %+.2f (client-bound %v)", f.Key, f.Metric.Name, f.Delta, f.ClientBound)
		}
	}
	if wrong*20 > len(failed) {
		t.Errorf("%d of %d failures in cells where nothing changed", wrong, len(failed))
	}
	// Gated on throughput only, as compare did before, it passes.
	if old, _ := Compare(base, costly, CompareOptions{Threshold: 0.05, Gate: []string{"rps"}}); len(old.Failed()) != 0 {
		t.Errorf("throughput alone flagged %d cells", len(old.Failed()))
	}
	// Throughput that moved in a client-bound cell is shown, not gated.
	faster := verdictSet(rng, 6, 0.05, "", 1, true)
	for i := range faster {
		if faster[i].Conns == 32 {
			faster[i].RPS *= 0.7
		}
	}
	c, _ = Compare(base, faster, CompareOptions{Threshold: 0.05})
	if n := len(c.Failed()); n != 0 {
		t.Errorf("a client-bound throughput change failed %d cells", n)
	}
	var out bytes.Buffer
	c.WriteText(&out)
	if !strings.Contains(out.String(), "client-bound: the generator's throughput, not gated") {
		t.Errorf("text does not say why:\n%s", out.String())
	}
}

// TestCompareAcrossMachines: sets from different hosts are compared as
// ratios to the limit server, so a machine twice as slow for every model
// passes and says why in one line, while one model falling behind the
// others fails; the same sets compared absolutely (--basis absolute)
// fail on the shift. A set more than a day older is judged the same way.
func TestCompareAcrossMachines(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	ws := verdictSet(rng, 6, 0.05, "", 1, false)
	pi := func(slow string) []Row {
		rows := verdictSet(rng, 6, 0.05, "", 1, false)
		for i := range rows {
			rows[i].Host, rows[i].CPUModel = "raspberrypi", "Raspberry Pi 4 Model B"
			f := 2.5
			if rows[i].Model == slow {
				f *= 1.3
			}
			rows[i].RPS /= f
			rows[i].CPUUSPerReq *= f
		}
		return rows
	}
	c, err := Compare(ws, pi(""), CompareOptions{Threshold: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if c.Basis != BasisRatio || !strings.Contains(c.BasisNote, "base ran on testhost (Test CPU), new on raspberrypi") || len(c.Failed()) != 0 {
		t.Errorf("uniform shift: basis %s (%s), %d failures", c.Basis, c.BasisNote, len(c.Failed()))
	}
	gated := 0
	for _, ch := range c.Changes {
		if ch.Gated {
			gated++
			if !strings.Contains(ch.Metric.Label, "÷ bare") || ch.Key.Model == "bare" {
				t.Errorf("gated %s %s in a ratio comparison", ch.Key, ch.Metric.Label)
			}
		}
	}
	if gated != 2*36 {
		t.Errorf("%d gated ratio changes, want 72 (36 cells but bare's, 2 metrics)", gated)
	}
	c, _ = Compare(ws, pi("eventloop"), CompareOptions{Threshold: 0.05})
	f := c.Failed()
	if len(f) < 12 {
		t.Errorf("one model 30%% behind: only %d failures", len(f))
	}
	for _, ch := range f {
		if ch.Key.Model != "eventloop" {
			t.Errorf("failure names %s", ch.Key)
		}
	}
	// The same host and CPU running another architecture (an arm64 build
	// under qemu-user) is another machine too.
	emu := verdictSet(rng, 6, 0.05, "", 1, false)
	for i := range emu {
		emu[i].Arch = "arm64"
		emu[i].RPS /= 3
	}
	if c, _ := Compare(ws, emu, CompareOptions{Threshold: 0.05}); c.Basis != BasisRatio || !strings.Contains(c.BasisNote, "arm64") || len(c.Failed()) != 0 {
		t.Errorf("another architecture on one host: basis %s (%s), %d failures", c.Basis, c.BasisNote, len(c.Failed()))
	}
	if c, _ := Compare(ws, pi(""), CompareOptions{Threshold: 0.05, Basis: BasisAbsolute}); len(c.Failed()) < 48 || c.Basis != BasisAbsolute {
		t.Errorf("absolute basis across machines: %d failures", len(c.Failed()))
	}
	// The same host, 3 days apart: ratios too; within a day: absolute.
	later := verdictSet(rng, 6, 0.05, "", 1, false)
	for i := range later {
		later[i].Time = later[i].Time.Add(72 * time.Hour)
		later[i].RPS /= 1.5
	}
	if c, _ := Compare(ws, later, CompareOptions{Threshold: 0.05}); c.Basis != BasisRatio || !strings.Contains(c.BasisNote, "3 days apart") || len(c.Failed()) != 0 {
		t.Errorf("3 days apart: %s (%s), %d failures", c.Basis, c.BasisNote, len(c.Failed()))
	}
	for i := range later {
		later[i].Time = later[i].Time.Add(-70 * time.Hour)
	}
	if c, _ := Compare(ws, later, CompareOptions{Threshold: 0.05}); c.Basis != BasisAbsolute || c.BasisNote != "" || len(c.Failed()) == 0 {
		t.Errorf("2 hours apart: %s (%s), %d failures", c.Basis, c.BasisNote, len(c.Failed()))
	}
}
