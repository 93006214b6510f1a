package human

import (
	"math"
	"testing"
)

func TestFormatters(t *testing.T) {
	nan := math.NaN()
	for in, want := range map[float64]string{0: "0", -3: "0", 0.5: "500ns", 17.3: "17.3µs", 74.6: "74.6µs", 100: "100µs",
		999.7: "1ms", 1000: "1ms", 2107.4: "2.11ms", 1e5: "100ms", 3.2e6: "3.2s"} {
		if got := Micros(in); got != want {
			t.Errorf("Micros(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0", 0.836: "0.84", 39.322: "39.3", 120: "120", 13050: "13.1k", -25000: "-25.0k", 1.25e6: "1.25M"} {
		if got := Number(in); got != want {
			t.Errorf("Number(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -1234: "-1,234"} {
		if got := Count(in); got != want {
			t.Errorf("Count(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0.5: "0.5", 20000: "20,000", 1234.5: "1,235"} {
		if got := Rate(in); got != want {
			t.Errorf("Rate(%v) = %q, want %q", in, got, want)
		}
	}
	if Micros(nan) != Missing || Number(nan) != Missing || Count(nan) != Missing {
		t.Errorf("NaN printed as a number: %q %q %q", Micros(nan), Number(nan), Count(nan))
	}
}
