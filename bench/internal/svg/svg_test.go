package svg

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func num(v float64) string { return fmt.Sprint(v) }

func TestBarChart(t *testing.T) {
	ser := []Series{{Label: "a<b", Color: "#111"}, {Label: "c", Color: "#222", Faded: true}}
	vals := [][]Bar{{{Med: 10, Lo: 8, Hi: 12}, Missing}, {{Med: 40, Lo: 40, Hi: 40}, {Med: 30, Lo: math.NaN(), Hi: math.NaN()}}}
	c := BarChart(`t "x" & y`, "req/s", []string{"g<1>", "g2"}, ser, vals, num)
	if len(c.Bars) != 3 || len(c.Whiskers) != 3 || len(c.Legend) != 2 {
		t.Fatalf("%d bars, %d whisker lines, %d legend entries; want 3, 3 (one whisker), 2", len(c.Bars), len(c.Whiskers), len(c.Legend))
	}
	if top, _ := NiceScale(40); top != 40 || c.Bars[1].Y != 28+220-40.0/40*220 {
		t.Errorf("axis top %v, bar at %v", top, c.Bars[1].Y)
	}
	if c.Bars[2].FillOpacity != "0.45" || c.Legend[1].Dash == "" {
		t.Errorf("a faded series is not drawn lighter and dashed: %+v %+v", c.Bars[2], c.Legend[1])
	}
	h, err := c.HTML()
	if err != nil {
		t.Fatal(err)
	}
	s := string(h)
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg"`, "a&lt;b", "g&lt;1&gt;", "t &#34;x&#34; &amp; y", "<title>a&lt;b g&lt;1&gt;: 10 req/s</title>"} {
		if !strings.Contains(s, want) {
			t.Errorf("chart lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "a<b") || strings.Count(s, "<svg") != 1 || !strings.HasSuffix(strings.TrimSpace(s), "</svg>") {
		t.Errorf("chart:\n%s", s)
	}
}

func TestLineChart(t *testing.T) {
	ser := []Series{{Label: "a", Color: "#111"}, {Label: "b", Color: "#222", Faded: true}, {Label: "none", Color: "#333"}}
	c := LineChart("lat", "percentile", []string{"50", "99"}, ser, [][]float64{{50, 2000}, {0, 900}, {math.NaN(), math.NaN()}}, num)
	if len(c.Lines) != 2 || len(c.Points) != 3 || c.Lines[1].Dash == "" || c.Frame == nil {
		t.Fatalf("lines %+v, points %d", c.Lines, len(c.Points))
	}
	// Decades 10 to 10^4 span the values 50 to 2000.
	if len(c.Grid) != 4 || c.Texts[0].S != "10" || c.Texts[3].S != "10000" {
		t.Errorf("grid %d, ticks %q .. %q", len(c.Grid), c.Texts[0].S, c.Texts[3].S)
	}
	empty := LineChart("none", "percentile", []string{"50"}, ser[:1], [][]float64{{math.NaN()}}, num)
	if h, err := empty.HTML(); err != nil || !strings.Contains(string(h), "no data") {
		t.Errorf("empty chart: %v %s", err, h)
	}
}

// TestNiceScale: the axis fits the data (a 210k peak is not drawn against
// 500k), in at most five steps of 1, 2, 2.5 or 5 times a power of ten.
func TestNiceScale(t *testing.T) {
	for _, c := range []struct{ v, top, step float64 }{
		{210e3, 250e3, 50e3}, {199e3, 200e3, 50e3}, {40, 40, 10}, {1, 1, 0.2}, {7.3, 8, 2}, {0.42, 0.5, 0.1}, {0, 1, 0.25},
	} {
		top, step := NiceScale(c.v)
		if math.Abs(top-c.top) > 1e-9*c.top || math.Abs(step-c.step) > 1e-9*c.step {
			t.Errorf("NiceScale(%v) = %v, %v; want %v, %v", c.v, top, step, c.top, c.step)
		}
	}
	for v := 0.013; v < 1e7; v *= 1.37 {
		top, step := NiceScale(v)
		if top < v || top > 1.6*v+step || top/step > 5+1e-9 {
			t.Errorf("NiceScale(%v) = %v, %v", v, top, step)
		}
	}
}
