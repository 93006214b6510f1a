// Package svg lays out the charts of sockbench's HTML report, bar charts
// with whiskers and log-scale line charts, and writes them as inline SVG
// through an html/template (chart.tmpl), so every label is escaped by the
// template, not by hand. It knows nothing of benchmarks: the report hands
// it groups, series and values, and formatters for the numbers.
//
// A chart is computed in Go into a Chart (every shape with its
// coordinates), then rendered; the page embeds the result.
package svg

import (
	"bytes"
	"embed"
	"html/template"
	"math"
	"strconv"
)

//go:embed chart.tmpl
var tmplFS embed.FS

var chartTmpl = template.Must(template.New("chart.tmpl").Funcs(template.FuncMap{
	"f":    func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"f0":   func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) },
	"plus": func(a, b float64) float64 { return a + b },
}).ParseFS(tmplFS, "chart.tmpl"))

// Series is one coloured series of a chart: a model of one result set.
// Faded series (the second result set and later, overlaid) are drawn
// lighter and dashed.
type Series struct {
	Label string
	Color string
	Faded bool
}

// Bar is one bar: its height (the median) and its whisker (Lo to Hi).
// NaN leaves out the bar, or the whisker.
type Bar struct{ Med, Lo, Hi float64 }

// Missing is a bar that is not drawn.
var Missing = Bar{math.NaN(), math.NaN(), math.NaN()}

// Chart is a laid-out chart, ready to render.
type Chart struct {
	Width, Height float64
	Title         Text
	Label         string // aria-label
	Grid          []Line // light lines behind the data
	Texts         []Text // ticks, axis and group labels, "no data"
	Bars          []Rect
	Whiskers      []Line
	Lines         []Polyline
	Points        []Circle
	Axes          []Line
	Frame         *Rect
	Legend        []Rect // swatches; their Tip is the label written beside them
}

// Rect is a rectangle; Tip, when set, is its tooltip (an SVG title).
type Rect struct {
	X, Y, W, H  float64
	Fill        string
	FillOpacity string
	Stroke      string
	StrokeWidth string
	Dash        string
	Tip         string
}

// Line is a line segment.
type Line struct {
	X1, Y1, X2, Y2 float64
	Stroke         string
	Width          string
}

// Text is a label; Rotate turns it about its anchor point, in degrees.
type Text struct {
	X, Y   float64
	Size   int
	Anchor string // start (default), middle or end
	Rotate float64
	Bold   bool
	S      string
}

// Polyline is a series' line through its points.
type Polyline struct {
	Points []Point
	Stroke string
	Dash   string
}

// Point is a point of a Polyline.
type Point struct{ X, Y float64 }

// Circle is a data point with a tooltip.
type Circle struct {
	X, Y float64
	Fill string
	Tip  string
}

// HTML renders the chart as an inline <svg> element.
func (c *Chart) HTML() (template.HTML, error) {
	var b bytes.Buffer
	if err := chartTmpl.Execute(&b, c); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil // chart.tmpl escaped every value
}

// NiceScale is a linear axis from 0 that fits v: the tick step is 1,
// 2, 2.5 or 5 times a power of ten, the smallest that reaches v in at
// most five steps, and the top is the first tick at or above v. Data
// peaking at 210k gets ticks of 50k up to 250k (rounding the top up to
// 1, 2 or 5 times a power of ten drew it against an axis to 500k).
func NiceScale(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.25
	}
	p := math.Pow(10, math.Floor(math.Log10(v/5)))
	for {
		for _, m := range []float64{1, 2, 2.5, 5} {
			step = m * p
			if n := math.Ceil(v/step - 1e-9); n <= 5 {
				return n * step, step
			}
		}
		p *= 10
	}
}

// legendWidth fits the longest series label (about 6.5 px a character at
// font-size 11).
func legendWidth(ser []Series) float64 {
	n := 0
	for _, s := range ser {
		n = max(n, len([]rune(s.Label)))
	}
	return math.Max(120, float64(n)*6.5+24)
}

// legend lays out one swatch and label per series from (x, y) down.
func (c *Chart) legend(ser []Series, x, y float64) {
	for i, s := range ser {
		yy := y + float64(i)*16
		r := Rect{X: x, Y: yy, W: 12, H: 10, Fill: s.Color, FillOpacity: "1", Stroke: s.Color, Tip: s.Label}
		if s.Faded {
			r.FillOpacity, r.Dash = "0.55", "4 3"
		}
		c.Legend = append(c.Legend, r)
	}
}

// BarChart lays out grouped bars with min–max whiskers on a linear axis
// from 0. vals[g][s] is series s in group g; tick formats the axis and
// the bars' tooltips, followed by unit.
func BarChart(title, unit string, groups []string, ser []Series, vals [][]Bar, tick func(float64) string) *Chart {
	const top = 28.0
	// Rotated group labels reach down and to the left of their group;
	// legends are as wide as their longest label.
	longest := 0
	for _, g := range groups {
		longest = max(longest, len([]rune(g)))
	}
	left := math.Max(64, float64(longest)*6*0.82-10)
	bottom := math.Max(50, float64(longest)*6*0.57+24)
	barW := 14.0
	groupW := float64(len(ser))*barW + 14
	plotW := math.Max(220, groupW*float64(len(groups)))
	plotH := 220.0
	c := &Chart{Width: left + plotW + legendWidth(ser) + 10, Height: top + plotH + bottom, Label: title,
		Title: Text{X: left, Y: 16, Size: 13, Bold: true, S: title}}
	maxV := 0.0
	for _, g := range vals {
		for _, v := range g {
			for _, x := range []float64{v.Med, v.Hi} {
				if !math.IsNaN(x) && x > maxV {
					maxV = x
				}
			}
		}
	}
	axisTop, step := NiceScale(maxV)
	y := func(v float64) float64 { return top + plotH - v/axisTop*plotH }
	for i := 0; float64(i)*step <= axisTop*(1+1e-9); i++ {
		v := float64(i) * step
		c.Grid = append(c.Grid, Line{left, y(v), left + plotW, y(v), "#e5e5e5", ""})
		c.Texts = append(c.Texts, Text{X: left - 4, Y: y(v) + 3, Size: 10, Anchor: "end", S: tick(v)})
	}
	c.Texts = append(c.Texts, Text{X: 12, Y: top + plotH/2, Size: 11, Anchor: "middle", Rotate: -90, S: unit})
	for gi, g := range groups {
		gx := left + float64(gi)*groupW + 7
		for si, s := range ser {
			v := vals[gi][si]
			if math.IsNaN(v.Med) {
				continue
			}
			x := gx + float64(si)*barW
			op := "0.9"
			if s.Faded {
				op = "0.45"
			}
			c.Bars = append(c.Bars, Rect{X: x, Y: y(v.Med), W: barW - 2, H: math.Max(0, top+plotH-y(v.Med)),
				Fill: s.Color, FillOpacity: op, Stroke: s.Color, StrokeWidth: "0.5",
				Tip: s.Label + " " + g + ": " + tick(v.Med) + " " + unit})
			if !math.IsNaN(v.Lo) && !math.IsNaN(v.Hi) && v.Hi > v.Lo {
				cx := x + (barW-2)/2
				c.Whiskers = append(c.Whiskers, Line{cx, y(v.Lo), cx, y(v.Hi), "#222", "1"},
					Line{cx - 3, y(v.Lo), cx + 3, y(v.Lo), "#222", ""}, Line{cx - 3, y(v.Hi), cx + 3, y(v.Hi), "#222", ""})
			}
		}
		lx := gx + float64(len(ser))*barW/2
		c.Texts = append(c.Texts, Text{X: lx, Y: top + plotH + 14, Size: 10, Anchor: "end", Rotate: -35, S: g})
	}
	c.Axes = append(c.Axes, Line{left, top + plotH, left + plotW, top + plotH, "#333", ""})
	c.legend(ser, left+plotW+12, top)
	return c
}

// LineChart lays out one line per series over categorical x (labelled
// xs, named xName below the axis) on a log-scale y axis; lines[s][i] is
// series s at xs[i], and NaN or values <= 0 are left out. tick formats
// the axis and the points' tooltips.
func LineChart(title, xName string, xs []string, ser []Series, lines [][]float64, tick func(float64) string) *Chart {
	const left, top, bottom, plotW, plotH = 56.0, 28.0, 36.0, 260.0, 180.0
	c := &Chart{Width: left + plotW + legendWidth(ser) + 10, Height: top + plotH + bottom, Label: title,
		Title: Text{X: left, Y: 16, Size: 12, Bold: true, S: title}}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, v := range l {
			if !math.IsNaN(v) && v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		c.Texts = append(c.Texts, Text{X: 60, Y: 100, Size: 11, S: "no data"})
		return c
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	y := func(v float64) float64 { return top + plotH - (math.Log10(v)-d0)/(d1-d0)*plotH }
	x := func(i int) float64 { return left + 10 + float64(i)*(plotW-20)/float64(max(1, len(xs)-1)) }
	for d := d0; d <= d1; d++ {
		v := math.Pow(10, d)
		c.Grid = append(c.Grid, Line{left, y(v), left + plotW, y(v), "#e5e5e5", ""})
		c.Texts = append(c.Texts, Text{X: left - 4, Y: y(v) + 3, Size: 10, Anchor: "end", S: tick(v)})
	}
	for i, l := range xs {
		c.Texts = append(c.Texts, Text{X: x(i), Y: top + plotH + 14, Size: 10, Anchor: "middle", S: l})
	}
	c.Texts = append(c.Texts, Text{X: left + plotW/2, Y: top + plotH + 30, Size: 10, Anchor: "middle", S: xName})
	for si, s := range ser {
		var pl Polyline
		var pts []Circle
		for i, v := range lines[si] {
			if !math.IsNaN(v) && v > 0 {
				pl.Points = append(pl.Points, Point{x(i), y(v)})
				pts = append(pts, Circle{X: x(i), Y: y(v), Fill: s.Color, Tip: s.Label + " p" + xs[i] + ": " + tick(v)})
			}
		}
		if len(pl.Points) == 0 {
			continue
		}
		pl.Stroke = s.Color
		if s.Faded {
			pl.Dash = "5 3"
		}
		c.Lines = append(c.Lines, pl)
		c.Points = append(c.Points, pts...)
	}
	c.Frame = &Rect{X: left, Y: top, W: plotW, H: plotH, Fill: "none", Stroke: "#333"}
	c.legend(ser, left+plotW+12, top)
	return c
}

// Axis describes one axis of an XYChart.
type Axis struct {
	Name string
	// Scale is ScaleLinear (from 0 on y, the data's range on x), ScaleLog
	// (decades) or ScaleNines (x only: percentiles spread as 90, 99,
	// 99.9..., each as wide as the one before, as HdrHistogram plots them).
	Scale int
	Tick  func(float64) string
}

// Scales of an Axis.
const (
	ScaleLinear = iota
	ScaleLog
	ScaleNines
)

// nines maps a percentile p (0..100) to how many nines it has: 90 -> 1,
// 99 -> 2, 99.9 -> 3.
func nines(p float64) float64 { return -math.Log10(math.Max(1-p/100, 1e-9)) }

// XYChart lays out one line per series over numeric x: xs[s][i], ys[s][i]
// is point i of series s (NaN, and values <= 0 on a log axis, are left
// out). It draws a run over time (x linear in seconds) and a latency
// spectrum (x in nines, y log).
func XYChart(title string, x, y Axis, ser []Series, xs, ys [][]float64) *Chart {
	const left, top, bottom, plotW, plotH = 64.0, 28.0, 40.0, 560.0, 200.0
	c := &Chart{Width: left + plotW + legendWidth(ser) + 10, Height: top + plotH + bottom, Label: title,
		Title: Text{X: left, Y: 16, Size: 12, Bold: true, S: title}}
	fx := func(v float64) float64 { return v }
	if x.Scale == ScaleNines {
		fx = nines
	}
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	usable := func(v float64, log bool) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && (!log || v > 0) }
	for s := range ser {
		for i := range xs[s] {
			if usable(xs[s][i], false) && usable(ys[s][i], y.Scale == ScaleLog) {
				xlo, xhi = math.Min(xlo, fx(xs[s][i])), math.Max(xhi, fx(xs[s][i]))
				ylo, yhi = math.Min(ylo, ys[s][i]), math.Max(yhi, ys[s][i])
			}
		}
	}
	if math.IsInf(xlo, 0) {
		c.Texts = append(c.Texts, Text{X: 60, Y: 100, Size: 11, S: "no data"})
		return c
	}
	if x.Scale == ScaleNines {
		xlo, xhi = 0, math.Max(1, math.Ceil(xhi-1e-9))
	}
	if xhi <= xlo {
		xhi = xlo + 1
	}
	px := func(v float64) float64 { return left + (fx(v)-xlo)/(xhi-xlo)*plotW }
	var py func(v float64) float64
	if y.Scale == ScaleLog {
		d0, d1 := math.Floor(math.Log10(ylo)), math.Ceil(math.Log10(yhi))
		if d1 <= d0 {
			d1 = d0 + 1
		}
		py = func(v float64) float64 { return top + plotH - (math.Log10(v)-d0)/(d1-d0)*plotH }
		for d := d0; d <= d1; d++ {
			v := math.Pow(10, d)
			c.Grid = append(c.Grid, Line{left, py(v), left + plotW, py(v), "#e5e5e5", ""})
			c.Texts = append(c.Texts, Text{X: left - 4, Y: py(v) + 3, Size: 10, Anchor: "end", S: y.Tick(v)})
		}
	} else {
		axisTop, step := NiceScale(yhi)
		py = func(v float64) float64 { return top + plotH - v/axisTop*plotH }
		for i := 0; float64(i)*step <= axisTop*(1+1e-9); i++ {
			v := float64(i) * step
			c.Grid = append(c.Grid, Line{left, py(v), left + plotW, py(v), "#e5e5e5", ""})
			c.Texts = append(c.Texts, Text{X: left - 4, Y: py(v) + 3, Size: 10, Anchor: "end", S: y.Tick(v)})
		}
	}
	// x ticks: every nine, or about six steps of the range.
	if x.Scale == ScaleNines {
		for n := 0.0; n <= xhi; n++ {
			xx := left + n/xhi*plotW
			c.Texts = append(c.Texts, Text{X: xx, Y: top + plotH + 14, Size: 10, Anchor: "middle", S: x.Tick(100 * (1 - math.Pow(10, -n)))})
		}
	} else {
		_, step := NiceScale((xhi - xlo) * 5 / 6)
		for v := math.Ceil(xlo/step) * step; v <= xhi+1e-9; v += step {
			c.Texts = append(c.Texts, Text{X: px(v), Y: top + plotH + 14, Size: 10, Anchor: "middle", S: x.Tick(v)})
		}
	}
	c.Texts = append(c.Texts, Text{X: left + plotW/2, Y: top + plotH + 32, Size: 10, Anchor: "middle", S: x.Name},
		Text{X: 12, Y: top + plotH/2, Size: 11, Anchor: "middle", Rotate: -90, S: y.Name})
	for s, sr := range ser {
		var pl Polyline
		var pts []Circle
		for i := range xs[s] {
			if usable(xs[s][i], false) && usable(ys[s][i], y.Scale == ScaleLog) {
				pl.Points = append(pl.Points, Point{px(xs[s][i]), py(ys[s][i])})
				pts = append(pts, Circle{X: px(xs[s][i]), Y: py(ys[s][i]), Fill: sr.Color, Tip: sr.Label + " at " + x.Tick(xs[s][i]) + ": " + y.Tick(ys[s][i])})
			}
		}
		if len(pl.Points) == 0 {
			continue
		}
		pl.Stroke = sr.Color
		if sr.Faded {
			pl.Dash = "5 3"
		}
		c.Lines = append(c.Lines, pl)
		if len(pts) <= 400 { // a point per value, with its tooltip, while they can be told apart
			c.Points = append(c.Points, pts...)
		}
	}
	c.Frame = &Rect{X: left, Y: top, W: plotW, H: plotH, Fill: "none", Stroke: "#333"}
	c.legend(ser, left+plotW+12, top)
	return c
}
