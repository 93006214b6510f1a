package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sockbench/sockbench/loadgen"
)

// renderPages writes the pages the report code makes: a single set, two
// sets (findings, what changed), a partial set, and one load run.
func renderPages(t *testing.T, dir string) map[string]string {
	t.Helper()
	rng := rand.New(rand.NewPCG(61, 62))
	a := verdictSet(rng, 6, 0.08, "eventloop", 1.2, false)
	b := verdictSet(rng, 6, 0.08, "", 1, false)
	partial := append(append([]Row{}, b[:40]...), partialRow(time.Now(), Env{Host: "h"}, Partial{Why: "interrupted", Done: 40, Planned: 288}))
	pages := map[string]string{}
	for name, sets := range map[string][]ResultSet{
		"one.html":     {{Name: "a.csv", Rows: a}},
		"two.html":     {{Name: "a.csv", Rows: a}, {Name: "b.csv", Rows: b}},
		"partial.html": {{Name: "p.csv", Rows: partial}},
	} {
		var buf bytes.Buffer
		if err := (&Report{Title: name, Sets: sets}).WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		pages[name] = buf.String()
	}
	var buf bytes.Buffer
	if err := (&RunReport{Rep: syntheticRun(rng), Checks: []string{"slo p99<1ms: ok (p99 412µs)"}}).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	pages["run.html"] = buf.String()
	for name, page := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return pages
}

// syntheticRun is a load report with 20 interval histograms and a stall
// in the 8th: test data for the run page.
func syntheticRun(rng *rand.Rand) *loadgen.Report {
	rep := &loadgen.Report{Target: "tcp://127.0.0.1:7000", Net: "tcp", Mode: "echo", Loop: "closed", Conns: 4, Pipeline: 1, Size: 64, DurationS: 2}
	all := hdrhistogram.New(1, 3600e9, 3)
	t0 := int64(1_780_000_000_000)
	for i := 0; i < 20; i++ {
		h := hdrhistogram.New(1, 3600e9, 3)
		for j := 0; j < 2000; j++ {
			v := int64(40_000 * math.Exp(0.5*rng.NormFloat64()))
			if i == 7 && j%100 == 0 {
				v = 30_000_000 // a 30 ms stall
			}
			h.RecordValue(v)
			all.RecordValue(v)
		}
		h.SetStartTimeMs(t0 + int64(i)*100)
		h.SetEndTimeMs(t0 + int64(i+1)*100)
		rep.Intervals = append(rep.Intervals, h)
	}
	rep.LatencyHist = all
	rep.Requests = all.TotalCount()
	rep.RPS = float64(rep.Requests) / rep.DurationS
	rep.Latency = loadgen.Summarize(all)
	return rep
}

// TestReportSVGParses: every chart of every page is well-formed SVG (an
// XML parser reads it whole), every coordinate a finite number, and the
// pages load nothing from anywhere: no script, no link, no URL but the
// SVG namespace.
func TestReportSVGParses(t *testing.T) {
	for name, page := range renderPages(t, t.TempDir()) {
		rest := page
		n := 0
		for {
			i := strings.Index(rest, "<svg")
			if i < 0 {
				break
			}
			j := strings.Index(rest[i:], "</svg>")
			if j < 0 {
				t.Fatalf("%s: an <svg> is never closed", name)
			}
			chart := rest[i : i+j+len("</svg>")]
			rest = rest[i+j:]
			n++
			dec := xml.NewDecoder(strings.NewReader(chart))
			elems := 0
			for {
				tok, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s: chart %d is not well-formed XML: %v", name, n, err)
				}
				if se, ok := tok.(xml.StartElement); ok {
					elems++
					for _, a := range se.Attr {
						switch a.Name.Local {
						case "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height":
							if f, err := strconv.ParseFloat(a.Value, 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < -1 || f > 5000 {
								t.Errorf("%s: chart %d: <%s %s=%q>", name, n, se.Name.Local, a.Name.Local, a.Value)
							}
						}
					}
				}
			}
			if elems < 10 {
				t.Errorf("%s: chart %d has only %d elements", name, n, elems)
			}
		}
		if n == 0 {
			t.Errorf("%s: no charts", name)
		}
		outside := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, bad := range []string{"<script", "<link", "http://", "https://", "src=", "NaN", "url("} {
			if strings.Contains(outside, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

// TestReportRendersInBrowser opens every page in a headless browser
// (Debian's chromium; CI installs it) with no network, and checks that
// the browser built the document: the findings, the charts as SVG
// elements of the DOM, a screenshot with something on it. Skipped where
// no chromium is installed; TestReportSVGParses still checks the SVG.
func TestReportRendersInBrowser(t *testing.T) {
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" || testing.Short() {
		t.Skip("no headless browser here (apt-get install chromium); the SVG is checked by TestReportSVGParses")
	}
	dir := t.TempDir()
	pages := renderPages(t, dir)
	for name, page := range pages {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		shot := filepath.Join(dir, name+".png")
		args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--proxy-server=127.0.0.1:9", // offline: any fetch would fail
			"--window-size=1400,2000", "--virtual-time-budget=2000", "--dump-dom", "--screenshot=" + shot, "file://" + filepath.Join(dir, name)}
		out, err := exec.CommandContext(ctx, browser, args...).Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %s: %v", name, browser, err)
		}
		dom := string(out)
		if got, want := strings.Count(dom, "<svg"), strings.Count(page, "<svg"); got != want || want == 0 {
			t.Errorf("%s: the browser's DOM has %d svg elements, the page %d", name, got, want)
		}
		heading := "Findings"
		if name == "run.html" {
			heading = "Latency spectrum"
		}
		if !strings.Contains(dom, heading) || !strings.Contains(dom, "</html>") {
			t.Errorf("%s: the DOM lacks %q", name, heading)
		}
		if st, err := os.Stat(shot); err != nil || st.Size() < 20_000 {
			t.Errorf("%s: screenshot %v (%v)", name, st, err)
		}
	}
}
