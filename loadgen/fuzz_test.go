package loadgen

import (
	"errors"
	"testing"
)

// FuzzParse: target and tag parsing never panic (sizes: protocol.FuzzParseSize), and what they accept is
// consistent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:7000", "udp://[::1]:1", "unix:///tmp/x.sock", "unixgram:///a",
		"tcp://:0", "://", "64", "16:4k", "1:2:3", "-1", "9999999999999999999", "9223372036854775807k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if network, addr, err := ParseTarget(s); err == nil {
			if network == "" || addr == "" {
				t.Fatalf("ParseTarget(%q) = %q, %q", s, network, addr)
			}
		} else if !errors.Is(err, ErrConfig) {
			t.Fatalf("ParseTarget(%q): %v does not wrap ErrConfig", s, err)
		}
		if seq, ok := parseTag([]byte(s)); ok {
			if got := string(appendTag(nil, seq)); got != s[:tagLen] {
				t.Fatalf("tag %q parsed to %d, formats as %q", s[:tagLen], seq, got)
			}
		}
	})
}
