package protocol

import (
	"errors"
	"testing"
)

// TestParseSize: one grammar for load -s and a profile's sizes (load took
// 4k but not 4KiB, bench took 4KiB but not 4k).
func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"64": 64, "512B": 512, "512 B": 512, "4k": 4096, "4K": 4096, "4KiB": 4096, "4kib": 4096, " 4 KiB ": 4096,
		"1M": 1 << 20, "1MiB": 1 << 20, "1024MiB": MaxSize, "1073741824": MaxSize,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-5", "x", "4QiB", "4KB", "KiB", "1.5k", "1025MiB", "1073741825", "9223372036854775807k", "1:2"} {
		if got, err := ParseSize(bad); err == nil || !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrBadSize", bad, got, err)
		}
	}
	for in, want := range map[string][2]Size{"64": {64, 64}, "16:4k": {16, 4096}, "16:4KiB": {16, 4096}, "1KiB:1KiB": {1024, 1024}} {
		if lo, hi, err := ParseSizeRange(in); err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("ParseSizeRange(%q) = %d, %d, %v", in, lo, hi, err)
		}
	}
	for _, bad := range []string{"", "0", "-5", "x", "10:5", "5:", ":5", "1:2:3"} {
		if _, _, err := ParseSizeRange(bad); !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseSizeRange(%q): %v", bad, err)
		}
	}
	for in, want := range map[Size]string{64: "64B", 1000: "1000B", 4096: "4KiB", 6144: "6KiB", 1 << 20: "1MiB", 1<<20 + 1024: "1025KiB"} {
		if got := in.String(); got != want {
			t.Errorf("Size(%d) = %q, want %q", int(in), got, want)
		}
	}
}

// FuzzParseSize: what the grammar accepts is in bounds, and a size reads
// back from its own String.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64", "16:4k", "1:2:3", "-1", "9999999999999999999", "9223372036854775807k", "4KiB", "1MiB:2MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseSizeRange(s)
		if err != nil {
			return
		}
		if lo <= 0 || hi < lo || hi > MaxSize {
			t.Fatalf("ParseSizeRange(%q) = %d, %d", s, lo, hi)
		}
		if back, err := ParseSize(lo.String()); err != nil || back != lo {
			t.Fatalf("%d -> %q -> %d, %v", lo, lo.String(), back, err)
		}
	})
}
