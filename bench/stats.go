package bench

import (
	"math"
	"sort"
	"sync"

	mstats "github.com/aclements/go-moremath/stats"
	"golang.org/x/perf/benchmath"
)

// Shift is a two-sample estimate with its confidence interval: how far
// sample a lies from sample b, as a ratio a/b (Ratio) or a difference
// a-b, by the Hodges-Lehmann estimator with Moses' distribution-free
// interval. Lo and Hi are NaN when the samples are too small for an
// interval at the confidence asked (3 runs a side cannot give a 95% one).
type Shift struct {
	Est, Lo, Hi float64
}

// OK reports whether the interval is finite.
func (s Shift) OK() bool { return !math.IsNaN(s.Lo) && !math.IsNaN(s.Hi) }

// Excludes reports whether the interval lies wholly on one side of v.
func (s Shift) Excludes(v float64) bool { return s.OK() && (s.Lo > v || s.Hi < v) }

// ratioShift estimates a/b: the Hodges-Lehmann estimate is the median of
// the n*m run-by-run ratios a_i/b_j, and the interval at confidence conf
// is Moses': between the (C+1)-th smallest and (C+1)-th largest of those
// ratios, where C is the largest U with P(U <= C) <= (1-conf)/2 under the
// exact Mann-Whitney distribution for n and m runs. It is the interval
// that goes with the U test compare uses (it excludes 1 when the exact
// two-sided test rejects at 1-conf, ties aside), needs no assumption
// about the distribution, and is computed on logarithms so that the
// interval of b/a is the inverse of that of a/b. Values <= 0 or not
// finite are left out.
func ratioShift(a, b []float64, conf float64) Shift {
	la, lb := logs(a), logs(b)
	s := hlShift(la, lb, conf)
	return Shift{math.Exp(s.Est), math.Exp(s.Lo), math.Exp(s.Hi)}
}

// diffShift estimates a-b the same way, from the n*m differences: for
// values that may be zero or below (a memory slope within its noise),
// where a ratio means nothing.
func diffShift(a, b []float64, conf float64) Shift {
	return hlShift(finite(a), finite(b), conf)
}

func hlShift(a, b []float64, conf float64) Shift {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return Shift{math.NaN(), math.NaN(), math.NaN()}
	}
	d := make([]float64, 0, n*m)
	for _, x := range a {
		for _, y := range b {
			d = append(d, x-y)
		}
	}
	sort.Float64s(d)
	est := median(d)
	c := mosesC(n, m, 1-conf)
	if c < 0 {
		return Shift{est, math.NaN(), math.NaN()}
	}
	return Shift{est, d[c], d[len(d)-1-c]}
}

// mosesC is the largest U with P(U <= C) <= alpha/2 for samples of n and
// m without ties (exact up to 20 a side, the normal approximation past
// that), or -1 when even U = 0 is more likely than that. Results are
// kept: a report asks for the same few sizes hundreds of times.
func mosesC(n, m int, alpha float64) int {
	key := mosesKey{n, m, alpha}
	if c, ok := mosesCache.Load(key); ok {
		return c.(int)
	}
	var c int
	if n > 20 || m > 20 {
		mu := float64(n*m) / 2
		sigma := math.Sqrt(float64(n*m*(n+m+1)) / 12)
		c = max(int(math.Floor(mu+mstats.StdNormal.InvCDF(alpha/2)*sigma-0.5)), -1)
	} else {
		// The CDF rises with U: the largest U at or under alpha/2, by
		// bisection over 0 .. n*m/2.
		dist := mstats.UDist{N1: n, N2: m}
		lo, hi := -1, n*m/2
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if dist.CDF(float64(mid)) <= alpha/2 {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		c = lo
	}
	mosesCache.Store(key, c)
	return c
}

type mosesKey struct {
	n, m  int
	alpha float64
}

var mosesCache sync.Map

// uTest is the two-sided Mann-Whitney U test of compare (benchmath's
// AssumeNothing: exact for small samples, ties included); NaN when it
// cannot be computed (an empty side).
func uTest(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN()
	}
	thr := &benchmath.Thresholds{CompareAlpha: 0.05}
	return benchmath.AssumeNothing.Compare(benchmath.NewSample(a, thr), benchmath.NewSample(b, thr)).P
}

// benjaminiHochberg returns the p-values adjusted by the Benjamini-Hochberg
// step-up procedure: q of the i-th smallest of m p-values is the least
// over j >= i of p_j*m/j. When no difference is real it keeps the chance
// of flagging any at alpha; when many are, it still finds them with few
// runs, where Bonferroni would need p <= alpha/m of each.
func benjaminiHochberg(p []float64) []float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	q := make([]float64, len(p))
	m := float64(len(p))
	least := 1.0
	for r := len(idx) - 1; r >= 0; r-- {
		least = math.Min(least, p[idx[r]]*m/float64(r+1))
		q[idx[r]] = least
	}
	return q
}

func logs(v []float64) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		if x > 0 && !math.IsInf(x, 0) {
			out = append(out, math.Log(x))
		}
	}
	return out
}

func finite(v []float64) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
